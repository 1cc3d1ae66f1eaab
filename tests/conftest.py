"""Shared fixtures. Every test gets its own HALGURU_HOME; nothing touches the real home."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "agents-templates"


@pytest.fixture(autouse=True)
def halguru_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HALGURU_HOME per test, with every cache that depends on it cleared."""
    from halguru.config import reset_settings
    from halguru.plugins.manager import reset_plugin_manager
    from halguru.store import sqlite as store_module

    home = tmp_path / "halguru-home"
    monkeypatch.setenv("HALGURU_HOME", str(home))
    monkeypatch.delenv("HALGURU_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("HALGURU_DB_PATH", raising=False)
    monkeypatch.delenv("HALGURU_HTTP_ALLOW_PRIVATE", raising=False)
    reset_settings()
    reset_plugin_manager()
    for store in store_module._STORES.values():
        store.close()
    store_module._STORES.clear()
    yield home
    for store in store_module._STORES.values():
        store.close()
    store_module._STORES.clear()
    reset_settings()
    reset_plugin_manager()


@pytest.fixture
def write_agent(tmp_path: Path):
    """Write an agent project (agent.yaml text, optional tools.py text) and return its folder."""

    def write(yaml_text: str, tools_py: str | None = None, name: str = "agent") -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "agent.yaml").write_text(yaml_text, encoding="utf-8")
        if tools_py is not None:
            (folder / "tools.py").write_text(tools_py, encoding="utf-8")
        return folder

    return write


@pytest.fixture
def halguru_cmd() -> list[str]:
    """The CLI as a real subprocess (the console script next to this Python)."""
    script = Path(sys.executable).parent / "halguru"
    return [str(script)] if script.exists() else [sys.executable, "-m", "halguru"]


@pytest.fixture
def subprocess_env(halguru_home: Path) -> dict[str, str]:
    return {**os.environ, "HALGURU_HOME": str(halguru_home), "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def cli():
    """Invoke the CLI in-process with typer's CliRunner; the exit code must be ``code``."""
    from typer.testing import CliRunner

    from halguru.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, code: int = 0):
        result = runner.invoke(app, list(args), input=input, env={"COLUMNS": "250", "NO_COLOR": "1"})
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    return invoke


@pytest.fixture
def cli_error(halguru_cmd, subprocess_env):
    """Run the real CLI (detached from any terminal), expect exit 1 and return its single stderr line."""
    import subprocess

    def invoke(*args: str, input: str = "", env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([*halguru_cmd, *args], input=input, capture_output=True, text=True,
                              env={**subprocess_env, **(env or {})}, timeout=60, start_new_session=True)
        assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("Error: "), lines[0]
        return lines[0]

    return invoke
