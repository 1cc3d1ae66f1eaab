"""The root typer app. Heavy libraries are imported inside commands, never here."""

from __future__ import annotations

import sys
from typing import Any

import typer

from halguru import __version__
from halguru.cli import (
    agents_cmd,
    channels_cmd,
    config_cmd,
    db_cmd,
    deploy_cmd,
    dev_cmd,
    jobs_cmd,
    kb_cmd,
    logs_cmd,
    mcp_cmd,
    models_cmd,
    plugins_cmd,
    publish_cmd,
    run_cmd,
    runs_cmd,
    test_cmd,
    tools_cmd,
)
from halguru.cli.examples import add_examples
from halguru.cli.synonyms import SuggestingGroup, suggest_synonyms
from halguru.printable import printable


def _usage_name(self: typer.core.TyperArgument) -> str:
    """An argument on a usage line as click writes it and as the help's text names it: PATH, [PATH] when
    optional, PATH... when repeated. typer 0.29 wrote ``{path}`` for a required argument."""
    name = self.metavar or (self.name or "").upper()
    if not self.required:
        name = f"[{name}]"
    return name + "..." if self.nargs != 1 else name


if hasattr(typer.core.TyperArgument, "_usage_display_name"):  # typer >= 0.29; older ones use click's PATH
    typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


def _format_commands(self: typer.core.TyperGroup, ctx: Any, formatter: Any) -> None:
    """A group's list of commands, each with its help's first sentence on up to two lines: on one line, click
    cut most of halguru's short (`Check an agent project as a run will need it: agent.yaml,...`)."""
    commands = [(name, command) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
    if commands:
        width = formatter.width - 6 - max(len(name) for name, _ in commands)  # what click gives one line
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(2 * width)) for name, command in commands])


typer.core.TyperGroup.format_commands = _format_commands  # type: ignore[method-assign]


class _Root(SuggestingGroup):
    """The root command: ``--debug`` is its option, taken after the command too (``halguru run x --debug``:
    click said "No such option"); not after ``--``, where everything is an argument."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context (typer vendors click)
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="halguru",
    cls=_Root,
    help="Build, debug and operate AI agents, locally first.",
    no_args_is_help=True,
    # typer's own --install-completion / --show-completion (bash, zsh, fish, PowerShell).
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help costs ~70 ms of imports on every `--help`.
    rich_markup_mode=None,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"halguru {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    _state["debug"] = debug
    import os

    if any(v.startswith("HALGURU_") and v.endswith("_FILE") for v in os.environ):  # else nothing more to import
        from halguru.config import load_secret_files

        load_secret_files()  # HALGURU_X_FILE -> HALGURU_X, before any command reads a setting


agents_cmd.register(app)
run_cmd.register(app)
test_cmd.register(app)
dev_cmd.register(app)
app.add_typer(models_cmd.app, name="models")
app.add_typer(logs_cmd.app, name="logs")
app.add_typer(kb_cmd.app, name="kb")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(channels_cmd.app, name="channels")
app.add_typer(mcp_cmd.app, name="mcp")
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
tools_cmd.register(app)
plugins_cmd.register(app)
deploy_cmd.register(app)
publish_cmd.register(app)
add_examples(app)  # again in main(), for the commands plugins add (the server's)
suggest_synonyms(app)


# plugin -> (command name, the plugin or "halguru" that has it when it is not this plugin's) of each command it
# gave, for `halguru plugins` (filled once, as main() adds them; a plugin's commands are known only then)
PLUGIN_COMMANDS: dict[str, list[tuple[str, str | None]]] = {}


def _add_plugin_commands() -> None:
    """Each plugin's commands, built-in plugins first; a command named like one already there (halguru's own,
    ``serve`` of its server plugin, another plugin's) is left out and said, naming the plugin."""
    import time

    from halguru.plugins.manager import SLOW_LOAD_S, plugin_hooks, skipped, warn_once

    # command name -> who gave it: "halguru" (its own commands and built-in plugins'), or a plugin's name
    taken = dict.fromkeys((_name(c) for c in [*app.registered_commands, *app.registered_groups]), "halguru")
    for plugin, builtin, register in plugin_hooks("register_commands"):
        commands, groups = len(app.registered_commands), len(app.registered_groups)
        started = time.perf_counter()
        register(cli=app)  # guarded: a plugin whose hook raises is skipped with a warning naming it
        if not builtin and (took := time.perf_counter() - started) >= SLOW_LOAD_S:
            warn_once(f"plugin {plugin!r} took {took:.1f} s to add its commands, and every halguru command waits "
                      "for it: import heavy libraries inside the commands (docs/plugins.md)")
        if skipped(plugin):  # what it added before raising goes too: a skipped plugin gives nothing
            del app.registered_commands[commands:], app.registered_groups[groups:]
            continue
        for added, first in ((app.registered_commands, commands), (app.registered_groups, groups)):
            for info in list(added[first:]):
                name = _name(info)
                if name in taken:
                    added.remove(info)  # type: ignore[arg-type]
                    owner = "halguru" if taken[name] == "halguru" else f"plugin {taken[name]!r}"
                    print(f"halguru: warning: plugin {plugin!r}: its command {name!r} is not used: {owner} "
                          "has a command of that name", file=sys.stderr)
                    PLUGIN_COMMANDS.setdefault(plugin, []).append((name, taken[name]))
                else:
                    taken[name] = "halguru" if builtin else plugin
                    PLUGIN_COMMANDS.setdefault(plugin, []).append((name, None))
                    if not builtin:
                        _said_when_failing(info, plugin, name)


def _said_when_failing(info: Any, plugin: str, name: str) -> None:
    """Wrap a plugin command's callback (and its group's commands') so that an exception of its own is one line
    naming the plugin and the command (``--debug``: the traceback); it was a traceback through typer's frames.
    halguru's errors, typer's and click's own (``typer.Exit``) and Ctrl-C go through as they are."""
    import functools

    from halguru.errors import HalguruError, exception_line

    group = getattr(info, "typer_instance", None)
    if group is not None:
        for sub in [*group.registered_commands, *group.registered_groups]:
            _said_when_failing(sub, plugin, f"{name} {_name(sub)}")
        return
    callback = getattr(info, "callback", None)
    if callback is None:
        return

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except HalguruError:
            raise
        except Exception as exc:
            if _state["debug"] or type(exc).__module__.split(".")[0] in ("click", "typer"):
                raise
            raise HalguruError(f"plugin {plugin!r}: its command {name!r} failed: {exception_line(exc)} (--debug "
                               "shows the traceback)") from exc

    info.callback = guarded


def _name(info: Any) -> str:
    """A registered command's or group's name as typer will give it."""
    group = getattr(info, "typer_instance", None)
    name = getattr(info, "name", None) or (group.info.name if group is not None else None)
    callback = getattr(info, "callback", None)
    return str(name or (callback.__name__.replace("_", "-") if callback is not None else ""))


def debugging() -> bool:
    """Whether ``--debug`` was given: full tracebacks, and a tool's under its error as a run prints."""
    return bool(_state.get("debug"))


def _standard_streams() -> None:
    """A standard stream the shell closed (``>&-``, ``<&-``) is None in Python, and every use of it a traceback:
    a closed stdin reads as empty (``run -`` then says so, chat ends as on Ctrl-D), a closed stderr drops the
    error lines (the exit status still says), and a closed stdout ends the command before it does anything. What
    a stream's encoding cannot hold is written as a backslash escape."""
    import io
    import os

    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (open for the process's life, as stdin is)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    if sys.stdout is None:
        print("Error: standard output is closed (>&-): send it to a file or to /dev/null instead", file=sys.stderr)
        sys.exit(1)
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 locale (PYTHONIOENCODING=ascii, latin-1): "é" was a
        if isinstance(stream, io.TextIOWrapper) and (stream.errors == "strict" or "utf" not in stream.encoding):
            stream.reconfigure(errors="backslashreplace")  # UnicodeEncodeError traceback


STOP_GRACE = 20.0  # seconds a command stopped by SIGTERM has to store what it cut before it is ended


def _terminate_as_interrupt() -> None:
    """SIGTERM (`kill`, `timeout`, a supervisor) stops a command as Ctrl-C does: a run is stored cancelled with
    its partial answer, an ingest says how far it got, the tests that finished are reported. It ended the
    process at once: the run read 'running' until its lease ran out. Where SIGINT is ignored (a background job),
    SIGTERM keeps its default; `serve` and `worker` put their own handlers over this one. A stop that hangs (a
    model call that does not return) does not keep the process: a second SIGTERM, or one STOP_GRACE seconds after
    the first, ends it as SIGTERM always did."""
    import signal

    def on_term(signum: int, frame: Any) -> None:
        import os
        import threading

        _state["terminated"] = True  # chat ends, where Ctrl-C only stops the answer
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        timer = threading.Timer(STOP_GRACE, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
        signal.raise_signal(signal.SIGINT)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGTERM, on_term)


def terminated() -> bool:
    """Whether SIGTERM came: a command that goes on after Ctrl-C (chat) ends instead."""
    return bool(_state.get("terminated"))


def main() -> None:
    """Entry point: load plugin commands, run, and turn user errors into one line."""
    from halguru.errors import HalguruError

    _standard_streams()
    _terminate_as_interrupt()
    try:
        _add_plugin_commands()
    except Exception as exc:  # a broken plugin must not break the whole CLI
        print(f"halguru: warning: a plugin failed to load: {type(exc).__name__}: {exc}", file=sys.stderr)
    add_examples(app)
    suggest_synonyms(app)
    try:
        app()
    except HalguruError as exc:
        if _state["debug"]:
            raise
        # ``terminal``: what the error says on the user's own terminal only (a knowledge error names the other
        # bases there); it may quote a server's reply or stderr
        print(f"Error: {printable(getattr(exc, 'terminal', None) or str(exc))}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # a file a command reads or writes (`-o /no/such/dir/x`): one line, not a traceback
        if _state["debug"]:
            raise
        if isinstance(exc, BrokenPipeError):  # `halguru logs | head`: the reader left, nothing to say
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        where = f"{exc.filename}: " if exc.filename else ""
        print(printable(f"Error: {where}{exc.strerror or exc}"), file=sys.stderr)
        sys.exit(1)
    finally:
        # The command is over: the interpreter's last garbage collection at exit would walk every object that
        # LanceDB, pydantic and the rest created (~0.2 s of a `kb search`), only to free memory the OS takes back
        # anyway. Frozen objects are left out of it; files and connections are closed by the commands themselves
        # and atexit handlers still run.
        import gc

        gc.freeze()
