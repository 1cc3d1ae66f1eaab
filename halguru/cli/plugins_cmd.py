"""`halguru plugins`: what is loaded, the hooks each implements and what it registers, and what was skipped;
`halguru plugins new NAME`: a plugin package to start from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="List loaded plugins (what each registers, what was skipped); `new` writes one.")

    @group.callback(invoke_without_command=True)
    def plugins(ctx: typer.Context,
                json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List loaded plugins, the hooks each implements and what it registers, and plugins skipped (why)."""
        if ctx.invoked_subcommand is not None:
            return
        from halguru.plugins.manager import plugin_report

        report = _with_refused(_with_commands(plugin_report()))
        if json_output:
            typer.echo(json.dumps(report, indent=2))
            return
        from halguru.cli.table import print_table

        print_table(["plugin", "package", "hooks", "registers"], [_row(entry) for entry in report],
                    ("hooks", "registers"))

    @group.command()
    def new(name: str = typer.Argument(..., help="The plugin's name (its entry point's), e.g. weather."),
            directory: Path = typer.Option(Path("."), "--dir", help="Where to write halguru-NAME/.")) -> None:
        """Write an installable plugin package: pyproject entry point, one example tool and a passing test."""
        import shlex

        from halguru.plugins.scaffold import write_plugin

        folder = write_plugin(name, directory)
        install = shlex.quote(f"{folder}[test]")
        typer.echo(f"Wrote {folder}: `pip install -e {install}` installs it and pytest (then `halguru "
                   "plugins`, `halguru tools`; `pytest` in it runs its test).")

    app.add_typer(group, name="plugins")


def _with_commands(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report with each plugin's commands (``commands``), which only the CLI knows: the server plugin's row
    named nothing, an example plugin's its tools but not its ``hello``."""
    from halguru.cli.app import PLUGIN_COMMANDS

    for entry in report:
        given = PLUGIN_COMMANDS.get(entry["name"], []) if "skipped" not in entry else []
        if kept := [name for name, taken_by in given if taken_by is None]:
            entry["registered"]["commands"] = kept
        entry.get("not_loaded", []).extend({"kind": "commands", "name": name, "taken_by": taken_by}
                                           for name, taken_by in given if taken_by is not None)
    return report


def _with_refused(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report with the names halguru refuses though no other plugin has them moved to ``not_loaded``: an
    embedder named like a profile (``default``, ``fast``) and a section named like a field of agent.yaml
    (``metadata``), taken by halguru, and a tool whose arguments have no JSON schema (``why``). They were listed
    as registered, while every command left them out with a warning."""
    from halguru.agents.driver import sections
    from halguru.rag.embedders import embedder_factories
    from halguru.tools.registry import plugin_tools

    kept: dict[str, tuple[set[str], dict[str, str | None]]] = {
        "tools": (set(plugin_tools()), {"taken_by": None, "why": "its arguments have no JSON schema"}),
            "embedders": (set(embedder_factories()), {"taken_by": "halguru"}),
            "sections": (set(sections()), {"taken_by": "halguru"})}
    for entry in report:
        registered = entry.get("registered", {})
        for kind, (names, because) in kept.items():
            refused = [name for name in registered.get(kind, []) if name not in names]
            if not refused:
                continue
            if left := [name for name in registered[kind] if name in names]:
                registered[kind] = left
            else:
                del registered[kind]
            entry["not_loaded"] += [{"kind": kind, "name": name, **because} for name in refused]
    return report


def _row(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    """A plugin's row: its package, hooks and names (``tools: a, b; not loaded: tool c (X has it)``), or why
    it was skipped."""
    if "skipped" in entry:
        return entry["name"], ", ".join(filter(None, [entry.get("package"), "skipped"])), entry["skipped"], ""
    package = "built-in" if entry["builtin"] else f"{entry['package']} {entry['version']}"
    names = [f"{kind.replace('_', ' ')}: {', '.join(found)}" for kind, found in entry["registered"].items()]
    names += [f"not loaded: {lost['kind'].replace('_', ' ').rstrip('s')} {lost['name']} "
              f"({lost.get('why') or lost['taken_by'] + ' has it'})" for lost in entry["not_loaded"]]
    return entry["name"], package, ", ".join(entry["hooks"]), "; ".join(names)
