"""Which of a project's conversation tests failed when they last ran, for `halguru test --failed`.

Kept in ``$HALGURU_HOME/test-failures/`` (one small JSON file per project, named by a hash of its resolved path),
not in the project: nothing to ignore in git, and a CI job's HALGURU_HOME is its own. As pytest's
``--last-failed``: a test that passes is forgotten, one that fails is remembered, and one that did not run (``-k``,
Ctrl-C) keeps what it was. A test file that was refused (malformed) counts as failed whole.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from halguru.config import home_dir

WHOLE_FILE = ""  # the name that stands for every test of a file that was refused


def _record(project: Path) -> Path:
    project = project.resolve()
    if project.is_file():  # its agent.yaml
        project = project.parent
    key = hashlib.sha256(str(project).encode()).hexdigest()[:24]
    return home_dir() / "test-failures" / f"{key}.json"


def _read(path: Path) -> set[tuple[str, str]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {(str(file), str(name)) for file, name in data["failed"]}
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not ours: as if nothing was remembered
        return None


def last_failed(project: Path) -> set[tuple[str, str]] | None:
    """The (test file, test name) pairs that failed when they last ran; None when no run was remembered."""
    return _read(_record(project))


def remember(project: Path, ran: dict[tuple[str, str], bool], refused: list[Path]) -> None:
    """Update the project's record with the tests that ran (``(file, name)``: passed?) and the refused files."""
    from halguru.atomic import lock_for_update, write_atomically

    path = _record(project)
    with lock_for_update(path):  # two runs with -k at once: neither loses the other's
        read = {file for file, _ in ran}  # a refused file whose tests ran now is no longer refused
        failed = {(file, name) for file, name in _read(path) or set()
                  if (file, name) not in ran and not (name == WHOLE_FILE and file in read)}
        failed |= {key for key, passed in ran.items() if not passed}
        failed |= {(str(file.resolve()), WHOLE_FILE) for file in refused}
        write_atomically(path, json.dumps({"project": str(project.resolve()), "failed": sorted(failed)},
                                          indent=1) + "\n")
