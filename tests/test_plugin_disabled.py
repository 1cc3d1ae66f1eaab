"""A plugin left out with HALGURU_LOAD_PLUGINS is listed by `halguru plugins` as not loaded, and why: it vanished
from the list, so a user who had turned it off (or a deploy that set the variable) saw no trace of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.feedback_plugins import install, on_path

TOOL = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool


@tool
def {name}(text: str) -> str:
    """Echo the text."""
    return text


@hookimpl
def register_tools(register):
    register({name})
'''


def test_a_plugin_left_out_by_load_plugins_is_listed_as_not_loaded(
        tmp_path: Path, halguru_cmd: list[str], subprocess_env: dict[str, str]) -> None:
    site = install(tmp_path / "site", "kept", "halguru_kept_plugin", TOOL.format(name="kept_echo"))
    install(site, "off", "halguru_off_plugin", TOOL.format(name="off_echo"))
    env = {**on_path(site, subprocess_env), "HALGURU_LOAD_PLUGINS": "kept"}

    def halguru(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert "warning" not in proc.stderr  # turned off on purpose: nothing to warn about
        return proc

    [row] = [line for line in halguru("plugins").stdout.splitlines() if line.startswith("off ")]
    assert "skipped" in row and row.endswith("not loaded: HALGURU_LOAD_PLUGINS does not name it")
    report = {entry["name"]: entry for entry in json.loads(halguru("plugins", "--json").stdout)}
    assert report["off"]["skipped"] == "not loaded: HALGURU_LOAD_PLUGINS does not name it"
    assert "skipped" not in report["kept"] and report["kept"]["registered"] == {"tools": ["kept_echo"]}
    assert "off_echo" not in halguru("tools").stdout
