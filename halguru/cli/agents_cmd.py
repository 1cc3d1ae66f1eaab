"""Project commands: new, templates, schema, validate."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def new(
        name: str = typer.Argument(..., help="Name of the agent; also the folder created."),
        template: str = typer.Option("basic", "--template", "-t", help="See `halguru templates`."),
        directory: Path = typer.Option(Path("."), "--dir", help="Where to create the project folder."),
    ) -> None:
        """Create an agent project from a template."""
        import shlex

        from halguru.scaffold import create_project

        path = create_project(name, template, directory)
        typer.echo(f"Created {path} from template {template!r}.")
        shown = shlex.quote(str(path))  # to paste: `--dir "my agents"` made `halguru run my agents/x`
        typer.echo(f'Try it:  halguru run {shown} "Hello!"   or   halguru chat {shown}')

    @app.command()
    def templates(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """List the agent templates."""
        from rich.table import Table

        from halguru.cli.table import print_rich_table
        from halguru.scaffold import list_templates

        if json_output:
            import json

            typer.echo(json.dumps([{"name": t.name, "description": t.description} for t in list_templates()],
                                  indent=2))
            return

        table = Table("template", "description", box=None, header_style="bold")
        for t in list_templates():
            table.add_row(t.name, t.description)
        print_rich_table(table)

    @app.command()
    def schema(
        output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
        tests: bool = typer.Option(False, "--tests", help="The schema of conversation test files instead."),
    ) -> None:
        """Print (or write) the JSON Schema of agent.yaml (or of test files), for editor completion."""
        if tests:
            from halguru.testing.spec import tests_json_schema as make_schema
        else:
            from halguru.agents.spec import agent_json_schema as make_schema

        text = json.dumps(make_schema(), indent=2) + "\n"
        if output is None:
            typer.echo(text, nl=False)
        else:
            from halguru.atomic import write_atomically

            if not output.absolute().parent.is_dir():  # said, not made: a typo in the path
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(output))
            write_atomically(output, text)  # a full disk leaves the old file (or none), not an empty one
            typer.echo(f"Wrote {output}")

    @app.command(short_help="Check an agent project as a run will need it: agent.yaml, tools.py, the model, "
                 "knowledge, MCP servers.")
    def validate(path: Path = typer.Argument(Path("."), help="Agent project folder or its agent.yaml.")) -> None:
        """Check an agent project as a run will need it: agent.yaml, tools.py, tools, model file, knowledge
        folders and MCP servers (started, and their tools listed)."""
        _validate(path)


def _validate(path: Path) -> None:
    """`halguru validate`: every problem of agent.yaml's schema at once, or what the project offers."""
    from halguru.agents.checks import check_project
    from halguru.errors import AgentSpecError
    from halguru.printable import printable

    try:
        report = check_project(path)
    except AgentSpecError as exc:
        if len(exc.problems) < 2:
            raise
        for problem in exc.problems:  # all of agent.yaml's, not one a round
            typer.echo(f"Error: {printable(problem)}", err=True)
        raise typer.Exit(1) from None
    agent = report.agent
    for warning in report.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    own_mcp = [n for (owner, _), names in report.mcp_tools.items() if owner == agent.name for n in names]
    team_tools = [t.name for t in agent.team.members[agent.name].team_tool_specs] if agent.team else []
    tools = ", ".join([*agent.tools, *own_mcp, *team_tools]) or "none"
    # A workflow has no model of its own: its steps' agents bring theirs (listed below).
    if agent.workflow is not None:
        count = len(agent.workflow.steps)
        runs_on = f"workflow of {count} step{'' if count == 1 else 's'}"
    else:
        runs_on = f"model {agent.spec.model}"
    typer.echo(f"OK: {agent.name} ({runs_on}; tools: {tools})")
    for (owner, server), names in report.mcp_tools.items():
        where = server if owner == agent.name else f"{server} (agent {owner})"
        typer.echo(f"MCP server {where}: {', '.join(names) or 'no tools'}")
    if agent.team is not None:
        typer.echo(f"Team: {', '.join(n for n in agent.team.members if n != agent.name) or 'no other members'}")
    if agent.workflow is not None:
        steps = [f"{sid} ({'agent ' + s.agent if s.agent else 'tool ' + s.tool if s.tool else 'condition'})"
                 for sid, s in agent.workflow.steps.items()]
        typer.echo(f"Workflow: {', '.join(steps)}")
