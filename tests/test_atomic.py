"""Files written whole or not at all (config.toml, models.yaml, recordings, exports), with the mode a user expects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from halguru.atomic import write_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_readable_as_an_editors_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "sub" / "recording.json"
        write_atomically(fresh, "{}\n")  # a recording committed with a project: not 0600 as mkstemp makes it
        assert fresh.read_text() == "{}\n" and mode(fresh) == 0o644
        os.umask(0o077)
        write_atomically(tmp_path / "strict.txt", b"x")
        assert mode(tmp_path / "strict.txt") == 0o600  # the umask is respected
        fresh.chmod(0o640)
        write_atomically(fresh, "again")
        assert fresh.read_text() == "again" and mode(fresh) == 0o640
        os.umask(0o022)
        write_atomically(tmp_path / "config.toml", "database_url = 'postgresql://u:pw@h/db'\n", private=True)
        assert mode(tmp_path / "config.toml") == 0o600
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_litter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "models.yaml"
    target.write_text("old\n")

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, "new\n")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["models.yaml"]


def test_a_failure_names_the_file_asked_for_not_the_temporary_one(tmp_path: Path) -> None:
    """`logs export -o DIR --force` said `.expdir.t6259t7q.tmp: Is a directory`."""
    target = tmp_path / "expdir"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        write_atomically(target, "x")
    assert raised.value.filename == str(target) and ".tmp" not in str(raised.value)
    assert [p.name for p in tmp_path.iterdir()] == ["expdir"]  # nothing left beside it
