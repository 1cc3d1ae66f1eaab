"""`halguru --help` with the README's example plugin installed: the plugin's `@tool` made pydantic's first model
as it loaded (~0.1 s of CPU, and pydantic's import), on every start: 0.33 s against 0.2 s without the plugin.
A tool's arguments model is now built when the tool is first used, and still before any run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.feedback_plugins import install, on_path

README_PLUGIN = '''
from halguru.plugins import hookimpl
from halguru import tool

@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()

@hookimpl
def register_tools(register):
    register(shout)

@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        print("hello from example")
'''

HELP = """
import sys
from halguru.cli.app import main
sys.argv = ["halguru", "--help"]
try:
    main()
except SystemExit:
    pass
print("pydantic loaded:", "pydantic" in sys.modules)
"""


def test_help_with_the_readme_plugin_makes_no_pydantic_model(tmp_path: Path, subprocess_env, halguru_cmd) -> None:
    env = on_path(install(tmp_path / "site", "example", "halguru_example", README_PLUGIN), subprocess_env)
    out = subprocess.run([sys.executable, "-c", HELP], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "  hello" in out.stdout  # the plugin loaded: its command is listed
    assert out.stdout.splitlines()[-1] == "pydantic loaded: False", out.stdout
    # its tool works as before, arguments checked against the model built on first use
    tools = subprocess.run([*halguru_cmd, "tools", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert '"shout"' in tools.stdout and '"text"' in tools.stdout, tools.stderr
    assert subprocess.run([*halguru_cmd, "hello"], env=env, capture_output=True, text=True,
                          timeout=60).stdout == "hello from example\n"


def test_a_plugin_tool_without_a_json_schema_is_left_out_with_one_warning(tmp_path: Path, subprocess_env,
                                                                         halguru_cmd) -> None:
    source = README_PLUGIN.replace("def shout(text: str)", "def shout(text: callable)")
    env = on_path(install(tmp_path / "site", "example", "halguru_example", source), subprocess_env)
    out = subprocess.run([*halguru_cmd, "tools"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "shout" not in out.stdout and "calculator" in out.stdout
    [warning] = out.stderr.strip().splitlines()
    assert warning.startswith("halguru: warning: plugin 'example': its tool 'shout' is not loaded: tool shout: "
                              "parameter 'text' has type"), warning
    hello = subprocess.run([*halguru_cmd, "hello"], env=env, capture_output=True, text=True, timeout=60)
    assert hello.stdout == "hello from example\n"
