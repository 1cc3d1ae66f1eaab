"""`halguru plugins`: what is loaded and which hooks each implements."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def plugins(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List loaded plugins and the hooks each implements, and plugins skipped because they failed."""
        from halguru.plugins.manager import list_plugins, plugin_failures

        infos, failed = list_plugins(), plugin_failures()
        if json_output:
            typer.echo(json.dumps([asdict(i) for i in infos]
                                  + [{"name": n, "skipped": reason} for n, reason in failed.items()], indent=2))
            return
        from halguru.cli.table import print_table

        rows = [(i.name, "built-in" if i.builtin else f"{i.package} {i.version}", ", ".join(i.hooks)) for i in infos]
        rows += [(name, "skipped", reason) for name, reason in failed.items()]
        print_table(["plugin", "package", "hooks"], rows, ("hooks",))
