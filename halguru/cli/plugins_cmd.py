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
        from rich.console import Console
        from rich.table import Table

        table = Table("plugin", "package", "hooks", box=None, header_style="bold")
        for i in infos:
            package = "built-in" if i.builtin else f"{i.package} {i.version}"
            table.add_row(i.name, package, ", ".join(i.hooks))
        Console().print(table)
