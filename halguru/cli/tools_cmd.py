"""`halguru tools [PATH]`: the tools an agent can be given (built-in, plugins) or a project's own, with schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _rows(path: Path | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Tool rows (name, source, description, parameters, allowed) and notes (MCP servers)."""
    from halguru.plugins.manager import owners
    from halguru.tools.builtin import BUILTIN_TOOLS
    from halguru.tools.registry import plugin_tools

    builtin = {t.name for t in BUILTIN_TOOLS}
    registered = plugin_tools()
    by = owners("register_tools")  # a plugin tool's row names its plugin
    rows: list[dict[str, Any]] = []
    notes: list[str] = []

    def add(tool: Any, source: str, allowed: bool | None = None) -> None:
        row = {"name": tool.name, "source": source, "description": tool.description,
               "parameters": tool.parameters}
        if source == "plugin":
            row["plugin"] = by.get(tool.name)
        if allowed is not None:
            row["allowed"] = allowed
        rows.append(row)

    if path is None:
        for tool in registered.values():
            add(tool, "built-in" if tool.name in builtin else "plugin")
        return rows, notes
    from halguru.agents.loader import load_agent, load_project_tools

    agent = load_agent(path)
    assert agent.path is not None
    own = load_project_tools(agent.path / "tools.py")
    http = {s.name for s in agent.spec.http_tools}
    for name, tool in agent.tools.items():
        source = ("tools.py" if name in own else "http_tools" if name in http else "built-in" if name in builtin
                  else "plugin" if name in registered else "knowledge")
        add(tool, source, True)
    for name, tool in own.items():
        if name not in agent.tools:
            add(tool, "tools.py", False)
    if agent.team is not None:  # what its team gives the lead's model: handoffs and specialists to ask
        for spec in agent.team.members[agent.name].team_tool_specs:
            add(spec, "team", True)
    for server in agent.spec.mcp:
        which = ", ".join(server.tools) if server.tools is not None else "all its tools"
        notes.append(f"MCP server {server.name}: {which} (listed when the server starts; see `halguru validate`)")
    return rows, notes


def register(app: typer.Typer) -> None:
    @app.command()
    def tools(
        path: Path | None = typer.Argument(None, help="An agent project: list its tools instead."),
        json_output: bool = typer.Option(False, "--json", help="Every tool with its JSON schema."),
    ) -> None:
        """List the built-in and plugin tools (or a project's tools) and their arguments."""
        rows, notes = _rows(path)
        if json_output:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        from halguru.cli.table import print_table

        cells = []
        for row in rows:
            source = " ".join(filter(None, [row["source"], row.get("plugin")]))
            source += " (not in tools:)" if row.get("allowed") is False else ""
            cells.append((row["name"], source, arguments_text(row["parameters"]), row["description"]))
        if cells:
            print_table(["tool", "source", "arguments", "description"], cells, ("arguments", "description"))
        else:
            typer.echo("No tools.")
        for note in notes:
            typer.echo(note)
        typer.echo("(--json prints each tool's JSON schema)")


def arguments_text(parameters: dict[str, Any]) -> str:
    """A tool's arguments as people read them (``timezone?: string``, ``unit: "C"|"F"``), here and in chat's
    /tools."""
    required = set(parameters.get("required", []))
    return ", ".join(f"{name}{'' if name in required else '?'}: {_type(schema)}"
                     for name, schema in parameters.get("properties", {}).items())


def _type(schema: dict[str, Any]) -> str:
    """An argument's type as people read it: ``string``, ``integer|null``, or the values it allows (``"C"|"F"``)."""
    if "enum" in schema or "const" in schema:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema.get("enum", [schema.get("const")]))
    if "type" in schema:
        return str(schema["type"])
    options = schema.get("anyOf") or schema.get("oneOf") or []
    return "|".join(_type(o) for o in options) or "any"
