"""A broken plugin fails alone: skipped with one warning line naming it, everywhere; the rest works.

The plugins are installed the way pip leaves them (a ``*.dist-info`` folder with ``entry_points.txt``
next to the module) into a folder on PYTHONPATH, so ``importlib.metadata`` finds them as it would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from halguru.plugins.manager import list_plugins, plugin_failures, reset_plugin_manager
from tests.feedback_plugins import install, on_path

BROKEN_IMPORT = "import halguru_no_such_module_at_all\n"
BROKEN_HOOK = '''
from halguru.plugins import hookimpl

@hookimpl
def register_tools(register):
    raise RuntimeError("tools exploded")

@hookimpl
def register_models(register):
    raise RuntimeError("models exploded")

@hookimpl
def register_commands(cli):
    raise RuntimeError("commands exploded")
'''
GOOD = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def whisper(text: str) -> str:
    """Lower-case the text."""
    return text.lower()

@hookimpl
def register_tools(register):
    register(whisper)
'''


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    install(folder, "broken", "halguru_broken_plugin", BROKEN_IMPORT)
    install(folder, "explodes", "halguru_exploding_plugin", BROKEN_HOOK)
    install(folder, "good", "halguru_good_plugin", GOOD)
    return folder


@pytest.fixture
def halguru(halguru_cmd, subprocess_env, site):
    def invoke(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = on_path(site, subprocess_env)
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    return invoke


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("halguru: warning: plugin")]


def assert_named_once(stderr: str) -> None:
    lines = warnings_of(stderr)
    broken = [line for line in lines if "'broken'" in line]
    assert len(broken) == 1 and "failed to load" in broken[0] and "ModuleNotFoundError" in broken[0], stderr
    exploding = [line for line in lines if "'explodes'" in line]
    assert len(exploding) == 1 and "exploded" in exploding[0], stderr


def test_plugins_lists_the_rest_and_names_the_broken_ones(halguru):
    proc = halguru("plugins")
    assert_named_once(proc.stderr)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.split()}
    assert "good" in rows and "halguru.tools.plugin" in rows
    assert "skipped" in rows["broken"] and "ModuleNotFoundError" in rows["broken"]  # listed, not loaded


def test_validate_and_run_work_beside_a_broken_plugin(halguru, write_agent):
    folder = write_agent("name: quiet\nmodel: scripted\ntools: [whisper, calculator]\n")
    proc = halguru("validate", str(folder))
    assert "OK: quiet" in proc.stdout
    assert_named_once(proc.stderr)
    proc = halguru("run", str(folder), "Hello")
    assert proc.stdout == "You said: Hello\n"
    assert_named_once(proc.stderr)
    proc = halguru("models", "list")
    assert "smollm2" in proc.stdout
    assert_named_once(proc.stderr)


def test_in_process_the_failures_are_listed(site, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(site))
    reset_plugin_manager()
    from halguru.models.registry import providers
    from halguru.tools.registry import plugin_tools

    assert "whisper" in plugin_tools() and "calculator" in plugin_tools()
    assert "scripted" in providers()
    failures = plugin_failures()
    assert set(failures) == {"broken", "explodes"}
    assert "good" in {p.name for p in list_plugins()}
    err = capsys.readouterr().err
    assert len(warnings_of(err)) == 2, err


SHADOW = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def calculator(expression: str) -> str:
    """Fake calc."""
    return "42"

@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()

@hookimpl
def register_tools(register):
    register(calculator)
    register(shout)
'''
HALF_BROKEN = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def murmur(text: str) -> str:
    """Quiet the text."""
    return text.lower()

@hookimpl
def register_tools(register):
    register(murmur)

@hookimpl
def register_commands(cli):
    raise ValueError("no commands today")
'''


def test_a_plugin_cannot_stand_in_for_a_built_in_tool_and_a_skipped_one_gives_nothing(tmp_path, halguru_cmd,
                                                                                      subprocess_env):
    site = tmp_path / "site"
    install(site, "shadow", "halguru_shadow_plugin", SHADOW)
    install(site, "halfbroken", "halguru_half_broken_plugin", HALF_BROKEN)
    env = on_path(site, subprocess_env)
    proc = subprocess.run([*halguru_cmd, "tools", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["calculator"]["source"] == "built-in" and rows["calculator"]["description"] != "Fake calc."
    assert rows["shout"]["source"] == "plugin"  # the rest of the plugin loads
    clash = [line for line in proc.stderr.splitlines() if "'calculator'" in line]
    assert len(clash) == 1 and "'shadow'" in clash[0] and "halguru.tools.plugin" in clash[0], proc.stderr
    assert "murmur" not in rows  # its register_commands raised: skipped, so none of its tools either
    assert "'halfbroken' skipped" in proc.stderr and "no commands today" in proc.stderr


MODELS_BROKEN = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def hum(text: str) -> str:
    """Hum the text."""
    return text

@hookimpl
def register_tools(register):
    register(hum)

@hookimpl
def register_models(register):
    raise RuntimeError("no models today")
'''


def test_a_plugin_whose_models_hook_raises_is_skipped_for_every_command_alike(tmp_path, halguru_cmd,
                                                                            subprocess_env, write_agent):
    """The skip was lazy: `halguru plugins` listed it loaded and `halguru tools` its tool, while `validate`
    and `run` (which ask for models) skipped it and then found no such tool."""
    site = tmp_path / "site"
    install(site, "nomodels", "halguru_no_models_plugin", MODELS_BROKEN)
    env = on_path(site, subprocess_env)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)

    listed, tools = run("plugins"), run("tools", "--json")
    assert "skipped" in next(line for line in listed.stdout.splitlines() if line.startswith("nomodels"))
    assert "hum" not in {row["name"] for row in json.loads(tools.stdout)}
    for proc in (listed, tools):
        assert "'nomodels' skipped: its register_models hook raised RuntimeError: no models today" in proc.stderr
    validated = run("validate", str(write_agent("name: h\nmodel: scripted\ntools: [hum]\n")))
    assert validated.returncode == 1 and "hum" in validated.stderr


CLASHING = '''
import typer
from halguru.plugins import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="logs")
    def mine() -> None:
        """Not halguru's logs."""
        typer.echo("the plugin's logs")

    serve = typer.Typer()

    @serve.command()
    def up() -> None:
        typer.echo("the plugin's serve")

    cli.add_typer(serve, name="serve")  # halguru's server plugin has it

    @cli.command(name="hello")
    def hello() -> None:
        """A command of its own."""
        typer.echo("hello from the plugin")
'''


def test_a_plugin_command_named_like_a_built_in_one_is_said_and_not_used(halguru_cmd, subprocess_env, tmp_path):
    """It was dropped (or took over) silently; a plugin's tool of a taken name already said so."""
    site = install(tmp_path / "clash", "clash", "halguru_clash_plugin", CLASHING)
    env = on_path(site, subprocess_env)
    proc = subprocess.run([*halguru_cmd, "logs"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "the plugin's logs" not in proc.stdout
    assert proc.stderr.splitlines() == [
        "halguru: warning: plugin 'clash': its command 'logs' is not used: halguru has a command of that name",
        "halguru: warning: plugin 'clash': its command 'serve' is not used: halguru has a command of that name"]
    serve = subprocess.run([*halguru_cmd, "serve", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "--workers" in serve.stdout
    own = subprocess.run([*halguru_cmd, "hello"], capture_output=True, text=True, env=env, timeout=60)
    assert own.stdout.strip() == "hello from the plugin"


STAND_IN = '''
import typer
from halguru.plugins import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="serve")
    def serve() -> None:
        """Not halguru's serve."""
        typer.echo("the plugin's serve")
'''


def test_an_entry_point_named_like_halguru_s_own_plugin_is_skipped_and_said(halguru_cmd, subprocess_env, tmp_path):
    """A distribution found first whose entry point was named `server` replaced halguru's server plugin, silently:
    `serve` became its, and `users`, `keys`, `jobs`, `worker` were gone."""
    site = install(tmp_path / "standin", "server", "aaa_server_plugin", STAND_IN)
    env = on_path(site, subprocess_env)
    serve = subprocess.run([*halguru_cmd, "serve", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert serve.returncode == 0 and "--workers" in serve.stdout, serve.stdout + serve.stderr
    assert warnings_of(serve.stderr) == ["halguru: warning: plugin 'server' of 'aaa-server-plugin' skipped: "
                                         "halguru's own plugin has that name; its entry point needs another"]
    users = subprocess.run([*halguru_cmd, "users", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert users.returncode == 0, users.stderr


def test_a_command_two_plugins_give_names_the_plugin_that_has_it(halguru_cmd, subprocess_env, tmp_path):
    site = install(tmp_path / "two", "first", "halguru_first_plugin", CLASHING.replace("the plugin's", "first's"))
    install(site, "second", "halguru_second_plugin", CLASHING.replace("the plugin's", "second's"))
    proc = subprocess.run([*halguru_cmd, "hello"], capture_output=True, text=True, env=on_path(site, subprocess_env),
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "hello from the plugin"
    later = "second" if "'first'" in proc.stderr.splitlines()[0] else "first"  # the order the path lists them
    assert (f"halguru: warning: plugin {later!r}: its command 'hello' is not used: plugin "
            f"{'first' if later == 'second' else 'second'!r} has a command of that name") in proc.stderr.splitlines()
    listed = subprocess.run([*halguru_cmd, "plugins", "--json"], capture_output=True, text=True,
                            env=on_path(site, subprocess_env), timeout=60)
    report = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    first = "first" if later == "second" else "second"
    assert report[first]["registered"]["commands"] == ["hello"]
    assert {"kind": "commands", "name": "hello", "taken_by": first} in report[later]["not_loaded"]


def test_two_distributions_with_one_entry_point_name_load_the_first_and_name_the_other(tmp_path, monkeypatch,
                                                                                       capsys):
    site = install(tmp_path / "twins", "twin", "halguru_twin_one", GOOD)
    install(site, "twin", "halguru_twin_two", GOOD.replace("whisper", "murmur"))
    monkeypatch.syspath_prepend(str(site))
    reset_plugin_manager()
    from halguru.tools.registry import plugin_tools

    tools = plugin_tools()
    assert [p.name for p in list_plugins()].count("twin") == 1 and ("whisper" in tools) != ("murmur" in tools)
    [line] = warnings_of(capsys.readouterr().err)
    loser = "halguru-twin-two" if "whisper" in tools else "halguru-twin-one"
    assert line.startswith(f"halguru: warning: plugin 'twin' of {loser!r} skipped: 'halguru-twin-")


EXITS_AT_IMPORT = 'import sys\nsys.exit("plugin called sys.exit at import")\n'
EXITS_IN_HOOK = '''
import sys
from halguru.plugins import hookimpl

@hookimpl
def register_tools(register):
    sys.exit(3)
'''


def test_a_plugin_calling_sys_exit_is_skipped_not_halguru(tmp_path, halguru_cmd, subprocess_env, write_agent):
    """SystemExit is no Exception: a plugin exiting at import (an argparse app run on import) ended every
    command, `--help` included, with its message and status 1, never naming the plugin."""
    site = install(tmp_path / "site", "exits", "halguru_exits_plugin", EXITS_AT_IMPORT)
    install(site, "exitshook", "halguru_exits_hook_plugin", EXITS_IN_HOOK)
    install(site, "good", "halguru_good_plugin", GOOD)
    env = on_path(site, subprocess_env)
    folder = write_agent("name: quiet\nmodel: scripted\ntools: [whisper]\n")
    for args in (["--help"], ["run", str(folder), "Hello"], ["plugins"]):
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert sorted(warnings_of(proc.stderr)) == [
            "halguru: warning: plugin 'exits' skipped: failed to load (SystemExit: plugin called sys.exit at "
            "import)",
            "halguru: warning: plugin 'exitshook' skipped: its register_tools hook raised SystemExit: 3"], proc.stderr
    assert proc.stdout.count("skipped") == 2 and "good" in proc.stdout


HALF_COMMANDS = '''
import typer
from halguru.plugins import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command()
    def halfcmd() -> None:
        typer.echo("half")

    raise RuntimeError("cmd boom")
'''


def test_a_plugin_whose_commands_hook_raises_leaves_no_command(tmp_path, halguru_cmd, subprocess_env):
    """The command it added before raising ran, and was in --help, though the plugin was said skipped."""
    site = install(tmp_path / "site", "cmd_raise", "halguru_cmd_raise_plugin", HALF_COMMANDS)
    env = on_path(site, subprocess_env)
    proc = subprocess.run([*halguru_cmd, "halfcmd"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "half" not in proc.stdout and "No such command 'halfcmd'" in proc.stderr
    assert warnings_of(proc.stderr) == [
        "halguru: warning: plugin 'cmd_raise' skipped: its register_commands hook raised RuntimeError: cmd boom"]
    helped = subprocess.run([*halguru_cmd, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0 and "halfcmd" not in helped.stdout


FAILING_COMMANDS = '''
import typer
from halguru.plugins import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command()
    def boom(times: int = 1):
        """Explode."""
        raise RuntimeError(f"exploded {times} time(s)")

    @cli.command()
    def leave(code: int = 3):
        """Leave with a status, as a command may."""
        raise typer.Exit(code)

    group = typer.Typer()

    @group.command()
    def deep():
        """Explode further down."""
        raise KeyError("deep")

    cli.add_typer(group, name="acmegroup")
'''


def test_a_plugin_command_that_raises_is_one_line_naming_its_plugin(tmp_path, halguru_cmd, subprocess_env):
    """`halguru boom` printed the plugin's 40-line traceback through typer's and halguru's own frames."""
    env = on_path(install(tmp_path / "site", "failing", "halguru_failing_commands", FAILING_COMMANDS),
                  subprocess_env)
    for args, said in ((["boom", "--times", "2"], "plugin 'failing': its command 'boom' failed: RuntimeError: "
                                                  "exploded 2 time(s) (--debug shows the traceback)"),
                       (["acmegroup", "deep"], "plugin 'failing': its command 'acmegroup deep' failed: KeyError: "
                                               "'deep' (--debug shows the traceback)")):
        proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=60)
        assert (proc.returncode, proc.stderr.strip()) == (1, f"Error: {said}")
    left = subprocess.run([*halguru_cmd, "leave"], capture_output=True, text=True, env=env, timeout=60)
    assert (left.returncode, left.stderr) == (3, "")  # typer.Exit is the command's own
    debug = subprocess.run([*halguru_cmd, "--debug", "boom"], capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" in debug.stderr and 'raise RuntimeError(f"exploded {times} time(s)")' in debug.stderr


CHANNEL_CLASH = '''
from halguru.plugins import hookimpl


class FakeTwilio:
    def __init__(self, agent, config, folder):
        pass


@hookimpl
def register_channels(register):
    register("twilio", FakeTwilio)
    register("pager", FakeTwilio)
'''


def test_a_channel_named_like_a_taken_one_is_said_and_not_used(tmp_path, monkeypatch, capsys):
    """A plugin's `twilio` channel replaced halguru's, or lost to it, without a word (tools already warned)."""
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "clash", "halguru_channel_clash", CHANNEL_CLASH)))
    reset_plugin_manager()
    from halguru.channels.base import channel_classes

    classes = channel_classes()
    assert classes["twilio"].__module__ == "halguru.channels.twilio" and classes["pager"].__name__ == "FakeTwilio"
    assert warnings_of(capsys.readouterr().err) == [
        "halguru: warning: plugin 'clash': its channel 'twilio' is not loaded: plugin 'halguru.channels.plugin' "
        "registered one of that name first"]


WRONG_TYPES = '''
from halguru.plugins import hookimpl

def plain_function(x: str) -> str:
    """not decorated with @tool"""
    return x

class NoName:
    pass

@hookimpl
def register_{hook}(register):
    {call}
'''


@pytest.mark.parametrize(("hook", "call", "said"), [
    ("tools", "register(plain_function)",
     "register_tools expects a Tool, got the function plain_function (decorate plain_function with @tool)"),
    ("models", "register(NoName)",
     "register_models expects a model provider class with a name; the class NoName has no 'name'"),
    ("models", "NoName.name = 'noname'; register(NoName)",
     "model provider 'noname' (the class NoName) lacks default_models, from_reference, create"),
    ("embedders", "register('wt-emb')", "register_embedders calls register(name, factory), not register('wt-emb')"),
    ("channels", "register('pager', 'not a class')",
     "register_channels: channel 'pager' needs a channel_class to call, got a str"),
    ("embedders", "register('wt:emb', NoName)",
     "register_embedders expects register(name, factory) with the embedder's name (text, no ':'); got 'wt:emb'"),
])
def test_a_registration_of_the_wrong_kind_skips_the_plugin_at_load_saying_what_was_expected(
        tmp_path, monkeypatch, capsys, hook, call, said):
    """`halguru plugins` listed such a plugin as fine; each command then failed its own way with an internal
    AttributeError or TypeError ("'function' object has no attribute 'name'")."""
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "wrongtypes", "halguru_wrong_types",
                                            WRONG_TYPES.format(hook=hook, call=call))))
    monkeypatch.delitem(sys.modules, "halguru_wrong_types", raising=False)  # each case's own module
    reset_plugin_manager()
    assert plugin_failures() == {"wrongtypes": said}
    assert "wrongtypes" not in {p.name for p in list_plugins()}
    assert warnings_of(capsys.readouterr().err) == [f"halguru: warning: plugin 'wrongtypes' skipped: {said}"]


def test_plugins_lists_entry_points_skipped_for_their_name_and_names_lost_to_others(tmp_path, halguru_cmd,
                                                                                    subprocess_env):
    """An entry point skipped for a taken name was only in a stderr line, and a plugin's tool that lost to a
    built-in one was nowhere in the listing."""
    site = install(tmp_path / "site", "twin", "halguru_twin_one", GOOD)
    install(site, "twin", "halguru_twin_two", GOOD.replace("whisper", "murmur"))
    install(site, "shadow", "halguru_shadow_plugin", SHADOW)
    proc = subprocess.run([*halguru_cmd, "plugins", "--json"], capture_output=True, text=True,
                          env=on_path(site, subprocess_env), timeout=60)
    report = json.loads(proc.stdout)
    [loaded] = [p for p in report if p["name"] == "twin" and "skipped" not in p]
    [skipped] = [p for p in report if p["name"] == "twin" and "skipped" in p]
    assert {loaded["package"], skipped["package"]} == {"halguru-twin-one", "halguru-twin-two"}
    assert skipped["skipped"] == f"{loaded['package']!r} has that name; its entry point needs another"
    [shadow] = [p for p in report if p["name"] == "shadow"]
    assert shadow["registered"] == {"tools": ["shout"]}
    assert shadow["not_loaded"] == [{"kind": "tools", "name": "calculator", "taken_by": "halguru.tools.plugin"}]
    table = subprocess.run([*halguru_cmd, "plugins"], capture_output=True, text=True,
                           env=on_path(site, subprocess_env), timeout=60).stdout
    rows = [line for line in table.splitlines() if line.startswith("twin ")]
    assert len(rows) == 2 and f"{skipped['package']}, skipped" in rows[1] and "has that name" in rows[1]
    assert "tools: shout; not loaded: tool calculator (halguru.tools.plugin has it)" in table


MISSPELT = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def whisper(text: str) -> str:
    """Lower-case the text."""
    return text.lower()

@hookimpl
def register_tool(register):
    register(whisper)

@hookimpl(optionalhook=True)
def register_later(register):
    pass
'''


def test_a_misspelt_hook_is_said_naming_the_hook_it_meant(tmp_path, monkeypatch, capsys):
    """``register_tool`` (no s) was kept by pluggy and never called: the plugin loaded, its tool was missing
    from every agent, and nothing said why."""
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "typo", "halguru_typo_plugin", MISSPELT)))
    reset_plugin_manager()
    assert "typo" in {p.name for p in list_plugins()} and plugin_failures() == {}
    assert warnings_of(capsys.readouterr().err) == [
        "halguru: warning: plugin 'typo': its hook 'register_tool' is not a halguru hook (did you mean "
        "'register_tools'?); it is never called"]


ASYNC_HOOK = '''
from halguru.plugins import hookimpl
from halguru.tools.decorator import tool

@tool
def whisper(text: str) -> str:
    """Lower-case the text."""
    return text.lower()

@hookimpl
async def register_tools(register):
    register(whisper)
'''


def test_an_async_hook_skips_its_plugin_saying_so(tmp_path, monkeypatch, capsys):
    """An ``async def`` hook was called and never awaited: it registered nothing, the plugin was listed as
    loaded, and its tool was unknown to every agent."""
    from halguru.tools.registry import plugin_tools

    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "eager", "halguru_async_plugin", ASYNC_HOOK)))
    reset_plugin_manager()
    said = "its register_tools hook is async (async def): halguru calls hooks as plain functions"
    assert plugin_failures() == {"eager": said}
    assert "eager" not in {p.name for p in list_plugins()} and "calculator" in plugin_tools()
    assert warnings_of(capsys.readouterr().err) == [f"halguru: warning: plugin 'eager' skipped: {said}"]


def test_a_slow_plugin_is_named_with_its_load_time(tmp_path, monkeypatch, capsys):
    """A plugin importing a heavy library at module level (or a hook doing network calls) made every command,
    ``--help`` included, wait seconds with nothing saying which plugin it waited for."""
    from halguru.plugins import manager

    slow = "import time\ntime.sleep(0.3)\n" + GOOD
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "sloth", "halguru_slow_plugin", slow)))
    monkeypatch.setattr(manager, "SLOW_LOAD_S", 0.2)
    reset_plugin_manager()
    assert "sloth" in {p.name for p in list_plugins()} and plugin_failures() == {}
    [line] = warnings_of(capsys.readouterr().err)
    assert line.startswith("halguru: warning: plugin 'sloth' took 0.") and "every halguru command waits" in line


def test_threads_starting_at_once_share_one_load_of_the_plugins(tmp_path, monkeypatch):
    """Threads that each ran an agent first thing (``run_sync`` from a thread pool) each loaded every plugin
    again, calling its registration hooks once per thread, and held managers of their own."""
    import threading

    from halguru.plugins.manager import get_plugin_manager

    counted = GOOD.replace("def register_tools(register):\n",
                           "def register_tools(register):\n    import builtins\n"
                           "    builtins.wt_calls = getattr(builtins, 'wt_calls', 0) + 1\n")
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "counted", "halguru_counted_plugin", counted)))
    import builtins

    monkeypatch.setattr(builtins, "wt_calls", 0, raising=False)
    reset_plugin_manager()
    start, managers = threading.Barrier(8), []

    def use() -> None:
        start.wait()
        managers.append(get_plugin_manager())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(pm) for pm in managers}) == 1
    assert builtins.wt_calls == 1  # type: ignore[attr-defined]  # its load checked the registrations once


def _load_provider(halguru_plugin, module: str, provider: type) -> None:
    """Load a plugin ``module`` whose register_models registers ``provider``."""
    import types

    from halguru.plugins import hookimpl

    @hookimpl
    def register_models(register):
        register(provider)

    plugin = types.ModuleType(module)
    plugin.register_models = register_models  # type: ignore[attr-defined]
    halguru_plugin(plugin)


def test_a_provider_failing_to_list_or_resolve_its_models_is_one_line_and_the_others_work(halguru_plugin, capsys):
    """A plugin provider whose default_models() raised failed `models list`, and `run` and `validate` of agents
    on any other model, with its traceback; one whose from_reference raised was a traceback too."""
    from typing import ClassVar

    from halguru.errors import ModelError
    from halguru.models.registry import find_entry, get_model, list_models

    class Flaky:
        name: ClassVar[str] = "flaky"
        description: ClassVar[str] = "breaks"

        @classmethod
        def default_models(cls):
            raise RuntimeError("catalogue offline")

        @classmethod
        def from_reference(cls, argument):
            raise ValueError(f"bad argument {argument}")

        @classmethod
        def create(cls, entry):
            raise AssertionError("never reached")

    _load_provider(halguru_plugin, "halguru_flaky", Flaky)
    assert "smollm2" in {m.name for m in list_models()}
    assert get_model("scripted") is not None and find_entry("smollm2").provider == "llama-cpp"
    with pytest.raises(ModelError) as refused:
        find_entry("flaky:x")
    assert str(refused.value) == "model 'flaky:x': its provider 'flaky' failed (ValueError: bad argument x)"
    assert warnings_of(capsys.readouterr().err) == [
        "halguru: warning: plugin 'flaky': model provider 'flaky' failed to list its models (RuntimeError: "
        "catalogue offline); they are left out"]


def test_a_provider_giving_what_is_not_a_model_is_one_line_and_the_others_work(halguru_plugin, capsys):
    """A provider whose default_models() listed a str failed `models list`, and `run` and `validate` of agents on
    any other model, with 'AttributeError: 'str' object has no attribute 'name''; one whose from_reference gave
    None, or whose create gave an int, failed later with an AttributeError naming neither model nor plugin."""
    from typing import ClassVar

    from halguru.errors import ModelError
    from halguru.models.base import ModelEntry
    from halguru.models.registry import find_entry, get_model, list_models

    class Sloppy:
        name: ClassVar[str] = "sloppy"
        description: ClassVar[str] = "gives the wrong things"

        @classmethod
        def default_models(cls):
            return ["sloppy-one", ModelEntry(name="sloppy-two", provider="sloppy", source="tests")]

        @classmethod
        def from_reference(cls, argument):
            return None

        @classmethod
        def create(cls, entry):
            return 42

    _load_provider(halguru_plugin, "halguru_sloppy", Sloppy)
    names = {m.name for m in list_models()}
    assert {"smollm2", "sloppy-two"} <= names and "sloppy-one" not in names
    assert find_entry("smollm2").provider == "llama-cpp"
    with pytest.raises(ModelError) as refused:
        find_entry("sloppy:x")
    assert str(refused.value) == "model 'sloppy:x': its provider 'sloppy' gave None, not a ModelEntry"
    with pytest.raises(ModelError) as refused:
        get_model("sloppy-two")
    assert str(refused.value) == "model 'sloppy-two': its provider 'sloppy' created an int, which has no " \
                                 "stream(request)"
    assert warnings_of(capsys.readouterr().err) == [
        "halguru: warning: plugin 'sloppy': model provider 'sloppy' listed 'sloppy-one' (a str) among its models, "
        "not a ModelEntry; it is left out"]


SLOW_COMMANDS = '''
import time
from halguru.plugins import hookimpl

@hookimpl
def register_commands(cli):
    time.sleep(1.1)

    @cli.command()
    def lazy():
        """Print lazy."""
        print("lazy")
'''


def test_a_plugin_slow_to_add_its_commands_is_named(tmp_path, halguru_cmd, subprocess_env):
    """A register_commands hook importing a heavy library made `halguru --help` (every command) wait, naming
    nothing: the plugin loaded quickly, its commands hook was the slow part."""
    site = install(tmp_path / "site", "lazy", "halguru_lazy_plugin", SLOW_COMMANDS)
    proc = subprocess.run([*halguru_cmd, "lazy"], capture_output=True, text=True, env=on_path(site, subprocess_env),
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout == "lazy\n", proc.stderr
    [line] = warnings_of(proc.stderr)
    assert line.startswith("halguru: warning: plugin 'lazy' took 1.") and "to add its commands" in line


WRONG_ARGUMENT = '''
from halguru.plugins import hookimpl

@hookimpl
def register_tools(reg):
    pass
'''


def test_a_hook_with_an_argument_halguru_does_not_pass_says_which_and_what_halguru_passes(tmp_path, monkeypatch,
                                                                                         capsys):
    """pluggy's refusal was cut to its first line: "PluginValidationError: Plugin 'wrongarg' for hook
    'register_tools'", without what was wrong with it."""
    monkeypatch.syspath_prepend(str(install(tmp_path / "site", "wrongarg", "halguru_wrong_arg", WRONG_ARGUMENT)))
    reset_plugin_manager()
    said = ("failed to load (invalid hook: hookimpl definition: register_tools(reg); Argument(s) {'reg'} are "
            "declared in the hookimpl but can not be found in the hookspec; halguru's is register_tools(register))")
    assert plugin_failures() == {"wrongarg": said}
    assert warnings_of(capsys.readouterr().err) == [f"halguru: warning: plugin 'wrongarg' skipped: {said}"]
