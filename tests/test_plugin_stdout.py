"""A plugin printing as it loads (a banner at import, a debug print in a hook) writes to stderr: halguru's stdout
is data for `--json`, a pipe, or the MCP server's stdio protocol, and a plugin's line there broke them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.feedback_plugins import install, on_path

NOISY = '''
print("acme banner at import")
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool


@tool
def whisper(text: str) -> str:
    """Lower-case the text."""
    return text.lower()


@hookimpl
def register_tools(register):
    print("acme registering tools")
    register(whisper)


@hookimpl
def register_commands(cli):
    print("acme adding commands")
'''


def test_a_plugin_s_prints_as_it_loads_go_to_stderr_not_into_json_or_answers(
        tmp_path: Path, halguru_cmd: list[str], subprocess_env: dict[str, str],
        write_agent: Callable[[str], Path]) -> None:
    site = install(tmp_path / "site", "noisy", "halguru_noisy_plugin", NOISY)
    env = on_path(site, subprocess_env)

    def halguru(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        return proc

    listed = halguru("plugins", "--json")
    assert "noisy" in {plugin["name"] for plugin in json.loads(listed.stdout)}  # stdout is the JSON alone
    assert "acme banner at import" in listed.stderr and "acme adding commands" in listed.stderr
    folder = write_agent("name: quiet\nmodel: scripted\ntools: [whisper]\n")
    ran = halguru("run", str(folder), "Hello")
    assert ran.stdout == "You said: Hello\n"
    assert "acme registering tools" in ran.stderr
