"""`halguru plugins`: what is loaded and which hooks each implements."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def plugins(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List loaded plugins and the hooks each implements."""
        from halguru.plugins.manager import list_plugins

        infos = list_plugins()
        if json_output:
            typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
            return
        from halguru.cli.table import print_table

        rows = [(i.name, "built-in" if i.builtin else f"{i.package} {i.version}", ", ".join(i.hooks)) for i in infos]
        print_table(["plugin", "package", "hooks"], rows, ("hooks",))
