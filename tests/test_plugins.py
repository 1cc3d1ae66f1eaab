"""Plugins: a real installed distribution (tests/example_plugin) seen through the CLI.

The example plugin is built and installed once per module into a temporary
folder with pip, then the CLI runs as a subprocess with PYTHONPATH pointing
there, exactly as if a user had `pip install`ed it.
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from halguru.plugins import hookspecs
from tests.feedback_plugins import on_path

EXAMPLE_SOURCE = Path(__file__).resolve().parent / "example_plugin"
EXAMPLE_HOOKS = ["register_commands", "register_models", "register_routes", "register_tools"]
BUILTINS = {"halguru.models.plugin": ["register_models"], "halguru.tools.plugin": ["register_tools"]}

SHOUT_AGENT = "name: loud\nmodel: echo-upper:x\ntools: [shout]\n"


def _pip_install(source: Path, target: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
         "--target", str(target), *extra, str(source)],
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build and install halguru-example-plugin into a folder of its own; return that folder."""
    work = tmp_path_factory.mktemp("example-plugin")
    # Build from a copy, so the build leaves no build/ or *.egg-info in the repository.
    source = work / "src"
    shutil.copytree(EXAMPLE_SOURCE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "*.pyc"))
    target = work / "site"
    # Offline, with the setuptools of this environment. That needs bdist_wheel (setuptools>=70.1 or the
    # `wheel` package); without it, pip builds in an isolated environment from its configured index.
    proc = _pip_install(source, target, "--no-build-isolation", "--no-index")
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        proc = _pip_install(source, target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "halguru_example_plugin" / "__init__.py").is_file()
    return str(target)


@pytest.fixture
def halguru(halguru_cmd, subprocess_env, plugin_path):
    """Run the CLI with the example plugin installed; ``load`` sets HALGURU_LOAD_PLUGINS."""

    def invoke(*args: str, load: str | None = None, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        env = on_path(plugin_path, subprocess_env)
        if load is not None:
            env["HALGURU_LOAD_PLUGINS"] = load
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        if code is not None:
            assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    return invoke


def row(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if line.split() and line.split()[0] == name]
    return line


# --- an installed plugin --------------------------------------------------------------------------


def test_plugins_lists_the_example_and_the_builtins(halguru):
    out = halguru("plugins").stdout
    example = row(out, "example")
    assert "halguru-example-plugin 0.3.1" in example
    assert ", ".join(EXAMPLE_HOOKS) in example
    for name, hooks in BUILTINS.items():
        builtin = row(out, name)
        assert "built-in" in builtin and ", ".join(hooks) in builtin


def test_plugins_json(halguru):
    infos = {i["name"]: i for i in json.loads(halguru("plugins", "--json").stdout)}
    assert infos["example"] == {"name": "example", "hooks": EXAMPLE_HOOKS, "builtin": False,
                                "package": "halguru-example-plugin", "version": "0.3.1",
                                "registered": {"tools": ["shout"], "model_providers": ["echo-upper"],
                                               "commands": ["hello"]},
                                "not_loaded": []}
    for name, hooks in BUILTINS.items():
        assert infos[name]["builtin"] is True and infos[name]["hooks"] == hooks


def test_plugins_says_what_each_plugin_registers_and_tools_names_the_plugin(halguru):
    """The listing gave hooks only; `halguru tools` said `plugin` without naming which."""
    assert "tools: shout; model providers: echo-upper; commands: hello" in row(halguru("plugins").stdout, "example")
    assert "tools: calculator, current_time" in row(halguru("plugins").stdout, "halguru.tools.plugin")
    # the commands a plugin adds are what it registers too: the server plugin's row named nothing
    assert "commands: serve, worker, keys, users" in row(halguru("plugins").stdout, "server")
    assert row(halguru("tools").stdout, "shout").split()[1:3] == ["plugin", "example"]
    tools = {t["name"]: t for t in json.loads(halguru("tools", "--json").stdout)}
    assert tools["shout"]["source"] == "plugin" and tools["shout"]["plugin"] == "example"


def test_plugin_command(halguru):
    assert halguru("hello").stdout == "hello from example\n"
    assert "hello" in halguru("--help").stdout


def test_plugin_model_provider_is_listed(halguru):
    out = halguru("models", "list").stdout
    assert "echo-upper" in row(out, "echo-upper")
    assert "echo-upper:ARG" in out
    entries = {e["name"]: e for e in json.loads(halguru("models", "list", "--json").stdout)}
    assert entries["echo-upper"]["provider"] == "echo-upper"


def test_agent_on_the_plugin_model_and_tool(halguru, write_agent):
    folder = write_agent(SHOUT_AGENT)
    assert "OK: loud (model echo-upper:x; tools: shout)" in halguru("validate", str(folder)).stdout
    assert halguru("run", str(folder), "make it loud").stdout == "MAKE IT LOUD\n"
    events = [json.loads(line) for line in halguru("run", "--json", str(folder), "hi").stdout.splitlines()]
    assert events[0]["model"] == "echo-upper:x"
    assert events[-1]["status"] == "ok" and events[-1]["output"] == "HI"


def test_plugin_tool_runs(halguru, write_agent, tmp_path):
    folder = write_agent(SHOUT_AGENT)
    script = tmp_path / "script.yaml"
    script.write_text('- tool_calls: [{name: shout, arguments: {text: "hey"}}]\n- "done"\n', encoding="utf-8")
    out = halguru("run", "--json", str(folder), "shout hey", "--model", f"scripted:{script}").stdout
    events = [json.loads(line) for line in out.splitlines()]
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["name"] == "shout" and result["content"] == "HEY!" and not result["is_error"]


# --- HALGURU_LOAD_PLUGINS -------------------------------------------------------------------------


def test_empty_load_plugins_hides_the_plugin(halguru, write_agent):
    report = json.loads(halguru("plugins", "--json", load="").stdout)
    infos = {i["name"] for i in report if "skipped" not in i}
    assert "example" not in infos
    assert set(BUILTINS) <= infos  # built-ins always load
    # listed as left out, not as if uninstalled
    assert {"name": "example", "package": "halguru-example-plugin",
            "skipped": "not loaded: HALGURU_LOAD_PLUGINS does not name it"} in report

    missing = halguru("hello", load="", code=2)
    assert "hello from example" not in missing.stdout
    assert "No such command 'hello'" in missing.stderr

    assert "echo-upper" not in halguru("models", "list", load="").stdout

    folder = write_agent(SHOUT_AGENT)
    failed = halguru("validate", str(folder), load="", code=1)
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert f"{folder / 'agent.yaml'}:3:" in lines[0] and "unknown tool 'shout'" in lines[0]


def test_load_plugins_naming_the_plugin_keeps_it(halguru):
    assert halguru("hello", load="example").stdout == "hello from example\n"
    infos = {i["name"] for i in json.loads(halguru("plugins", "--json", load="example").stdout)}
    assert "example" in infos
    # Another name leaves it out.
    infos = {i["name"] for i in json.loads(halguru("plugins", "--json", load="someother").stdout)
             if "skipped" not in i}
    assert "example" not in infos


def test_a_misspelt_plugin_in_load_plugins_is_said_with_the_installed_name(halguru):
    """HALGURU_LOAD_PLUGINS=exmaple said only 'not installed': which name was meant was left to guess."""
    proc = halguru("plugins", load="exmaple")
    assert proc.stderr.strip() == ("halguru: warning: plugin 'exmaple' skipped: not installed (named in "
                                   "HALGURU_LOAD_PLUGINS) (did you mean 'example'?)")


@pytest.mark.parametrize("load", ["nonexistent", ""])
def test_load_plugins_never_removes_the_built_in_server(halguru_cmd, subprocess_env, load):
    """Bug 8: the server plugin ships with halguru, so limiting third-party plugins keeps `halguru serve`."""
    env = {**subprocess_env, "HALGURU_LOAD_PLUGINS": load}
    proc = subprocess.run([*halguru_cmd, "serve", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Serve agents" in proc.stdout
    listed = subprocess.run([*halguru_cmd, "plugins", "--json"], capture_output=True, text=True, env=env,
                            timeout=60)
    infos = {i["name"]: i for i in json.loads(listed.stdout)}
    assert infos["server"]["builtin"] is True and "register_commands" in infos["server"]["hooks"]


# --- hookspecs and import weight ----------------------------------------------------------------


def test_every_hookspec_has_a_docstring():
    specs = {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "halguru_spec")}
    assert {"register_models", "register_embedders", "register_tools", "register_commands",
            "register_channels", "register_routes"} <= set(specs)
    undocumented = [name for name, fn in specs.items() if not (inspect.getdoc(fn) or "").strip()]
    assert undocumented == []


def test_register_channels_is_called_for_builtin_and_plugin_channels(tmp_path, monkeypatch):
    """Channels come from the hook: the built-in ones, and a third party's installed like pip would."""
    import sys

    from halguru.channels.base import channel_classes
    from halguru.plugins.manager import reset_plugin_manager
    from tests.jobs.hook_channel import install_hook_channel

    monkeypatch.syspath_prepend(str(install_hook_channel(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "halguru_hook_channel", raising=False)
    reset_plugin_manager()
    assert {"email", "hook"} <= set(channel_classes())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert not [line for line in readme.splitlines() if "register_channels" in line and "not called" in line]


def test_the_hookspecs_say_what_the_code_calls_as_docs_plugins_md_does():
    """register_models' docstring named a describe() nothing has and left out from_reference, which every
    PROVIDER:ARG reference calls; register_embedders' said factory(**options), but the code calls
    factory(argument) and then sets the embedder's name."""
    from halguru.plugins.contracts import PROVIDER_METHODS

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    models = inspect.getdoc(hookspecs.register_models) or ""
    for attribute in ("name", "description", *PROVIDER_METHODS):
        assert f"``{attribute}" in models and f"`{attribute}" in guide, attribute
    assert "describe()" not in models
    embedders = " ".join((inspect.getdoc(hookspecs.register_embedders) or "").split())
    assert "**options" not in embedders
    assert "``factory()`` or ``factory(argument)``" in embedders and "``name`` must be writable" in embedders
    assert "`factory(argument)`" in guide and "writable attribute" in " ".join(guide.split())


def test_plugin_manager_knows_exactly_the_documented_hooks():
    from halguru.plugins.manager import get_plugin_manager

    specs = {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "halguru_spec")}
    hooks = {name for name, caller in vars(get_plugin_manager().hook).items() if caller.spec is not None}
    assert hooks == specs


HEAVY = {"llama_cpp", "lancedb", "textual", "fastapi", "pyarrow"}


def test_help_imports_nothing_heavy(halguru_cmd, subprocess_env):
    if Path(halguru_cmd[0]).name == "halguru":
        argv = [sys.executable, "-X", "importtime", halguru_cmd[0], "--help"]
    else:
        argv = [sys.executable, "-X", "importtime", "-m", "halguru", "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    top_level = {name.split(".")[0] for name in imported}
    assert "typer" in top_level and "halguru" in top_level  # the parsing sees real imports
    assert top_level & HEAVY == set()


def test_plugin_route_in_serve_mode(halguru_cmd, subprocess_env, plugin_path, write_agent):
    import socket
    import time

    import httpx

    folder = write_agent("name: basic\nmodel: scripted\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*halguru_cmd, "serve", str(folder), "--dev", "--port", str(port)],
                            env=on_path(plugin_path, subprocess_env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/example/shout", params={"text": "hi"}, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json() == {"text": "HI!"}
        assert "/example/shout" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").text
    finally:
        proc.terminate()
        proc.wait(15)


def test_each_agent_loaded_does_not_ask_the_plugins_again(halguru_plugin, write_agent):
    """Every load_agent (every validate, every agent serve loads) called every plugin's register_tools again:
    a hook that builds its tools from a spec made each one wait for it."""
    import types

    from halguru.agents.loader import load_agent
    from halguru.plugins import hookimpl
    from halguru.tools.decorator import tool

    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    calls: list[int] = []

    @hookimpl
    def register_tools(register):
        calls.append(1)
        register(ping)

    plugin = types.ModuleType("halguru_counting")
    plugin.register_tools = register_tools  # type: ignore[attr-defined]
    halguru_plugin(plugin)
    folder = write_agent("name: pinger\nmodel: scripted\ntools: [ping, calculator]\n")
    for _ in range(3):
        assert list(load_agent(folder).tools) == ["ping", "calculator"]
    assert len(calls) == 2  # its load checks what it registers, then halguru asks it once


def test_plugins_lists_an_embedder_or_section_halguru_refuses_as_not_loaded(halguru_plugin, cli):
    """A plugin's embedder named `default` (a profile), section `metadata:` (a field of agent.yaml) and a tool
    whose arguments have no JSON schema were listed by `halguru plugins` as registered, while every command left
    them out with a warning."""
    import types

    from halguru import tool
    from halguru.plugins import hookimpl

    class Embedder:
        dimension = 4

        def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0, 0.0, 0.0] for _ in texts]

    @hookimpl
    def register_embedders(register):
        register("default", Embedder)
        register("reserved-free", Embedder)

    @hookimpl
    def register_sections(register):
        register("metadata", lambda agent: None)

    @tool
    def unschemed(x: callable) -> str:  # type: ignore[valid-type]
        """No JSON schema for x."""
        return "x"

    @hookimpl
    def register_tools(register):
        register(unschemed)

    plugin = types.ModuleType("halguru_reserved")
    plugin.register_embedders = register_embedders  # type: ignore[attr-defined]
    plugin.register_sections = register_sections  # type: ignore[attr-defined]
    plugin.register_tools = register_tools  # type: ignore[attr-defined]
    halguru_plugin(plugin, name="reserved")
    [entry] = [e for e in json.loads(cli("plugins", "--json").stdout) if e["name"] == "reserved"]
    assert entry["registered"] == {"embedders": ["reserved-free"]}
    assert entry["not_loaded"] == [
        {"kind": "tools", "name": "unschemed", "taken_by": None, "why": "its arguments have no JSON schema"},
        {"kind": "embedders", "name": "default", "taken_by": "halguru"},
        {"kind": "sections", "name": "metadata", "taken_by": "halguru"}]
    row = next(line for line in cli("plugins").stdout.splitlines() if line.startswith("reserved "))
    assert "embedders: reserved-free; not loaded: tool unschemed (its arguments have no JSON schema); not " \
           "loaded: embedder default (halguru has it)" in row
