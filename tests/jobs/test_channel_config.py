"""`halguru validate` and `halguru serve` check the channels: section before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml


def project(tmp_path: Path, channels: dict) -> Path:
    folder = tmp_path / "bot"
    folder.mkdir()
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "bot", "model": "scripted", "channels": channels}))
    return folder


def test_unknown_channel_is_one_line_naming_the_known_ones(tmp_path: Path, cli_error: Callable[..., str]) -> None:
    line = cli_error("validate", str(project(tmp_path, {"pigeon": {}})))
    assert "agent.yaml:" in line and "unknown channel 'pigeon'" in line and "email" in line and "twilio" in line


def test_bad_channel_settings_fail_validate_and_serve(tmp_path: Path, cli_error: Callable[..., str]) -> None:
    folder = project(tmp_path, {"email": {"address": "not-an-address"}})
    assert "email" in cli_error("validate", str(folder))
    assert "email" in cli_error("serve", str(folder), "--dev", "--port", "0")
    assert "email" in cli_error("worker", str(folder))
