"""`halguru mcp`: serve a project's agents to MCP clients (each agent a tool ask_<name>)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="MCP (Model Context Protocol): serve agents to MCP clients.", no_args_is_help=True)


@app.command()
def serve(
    paths: list[Path] = typer.Argument(..., help="Agent projects (folders with agent.yaml) to serve."),
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at /mcp instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", help="With --http: the address to listen on (other than loopback: "
                                                         "needs HALGURU_MCP_TOKEN)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="With --http: the port to listen on."),
    shutdown_timeout: float = typer.Option(30, "--shutdown-timeout", min=0, help="With --http: seconds the calls in "
                                           "flight get to finish when stopped; then their runs are interrupted."),
) -> None:
    """Expose each agent as an MCP tool ask_<agent> (stdio by default, for clients that start it)."""
    from halguru.mcp_server import serve as serve_agents

    serve_agents(paths, transport="http" if http else "stdio", host=host, port=port,
                 shutdown_timeout=shutdown_timeout)
