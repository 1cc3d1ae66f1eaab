"""`halguru plugins`: what is loaded, the hooks each implements and what it registers, and what was skipped."""

from __future__ import annotations

import json
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def plugins(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List loaded plugins, the hooks each implements and what it registers, and plugins skipped (why)."""
        from halguru.plugins.manager import plugin_report

        report = plugin_report()
        if json_output:
            typer.echo(json.dumps(report, indent=2))
            return
        from halguru.cli.table import print_table

        print_table(["plugin", "package", "hooks", "registers"], [_row(entry) for entry in report],
                    ("hooks", "registers"))


def _row(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    """A plugin's row: its package, hooks and names (``tools: a, b; not loaded: tool c (X has it)``), or why
    it was skipped."""
    if "skipped" in entry:
        return entry["name"], ", ".join(filter(None, [entry.get("package"), "skipped"])), entry["skipped"], ""
    package = "built-in" if entry["builtin"] else f"{entry['package']} {entry['version']}"
    names = [f"{kind.replace('_', ' ')}: {', '.join(found)}" for kind, found in entry["registered"].items()]
    names += [f"not loaded: {lost['kind'].replace('_', ' ').rstrip('s')} {lost['name']} ({lost['taken_by']} has it)"
              for lost in entry["not_loaded"]]
    return entry["name"], package, ", ".join(entry["hooks"]), "; ".join(names)
