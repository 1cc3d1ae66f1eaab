"""`halguru logs`: recent runs and their event trees."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

app = typer.Typer(help="Recent runs and their traces.", invoke_without_command=True)


@app.callback()
def logs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs."),
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's runs."),
    conversation: str | None = typer.Option(None, "--conversation", "-c", help="Only this conversation's runs."),
    conversations: bool = typer.Option(False, "--conversations", help="List conversations instead of runs."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List recent runs (agent, model, status, duration, tokens)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from halguru.store import open_store

    store = open_store()
    if conversations:
        rows = store.list_conversations(limit=limit, agent=agent)
        if json_output:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.table import Column

        table = Table(Column("conversation", no_wrap=True), "agent", "messages", "updated", "title", box=None,
                      header_style="bold")
        for r in rows:
            table.add_row(r["id"], r["agent"], str(r["messages"]), _when(r["updated"]), r["title"])
        Console().print(table)
        return
    rows = store.list_runs(limit=limit, agent=agent, conversation_id=conversation)
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Column

    table = Table(Column("run", no_wrap=True), Column("when", no_wrap=True), "agent", "model", "status",
                  "duration", "tokens", "input", box=None, header_style="bold")
    styles = {"ok": "green", "failed": "red", "cancelled": "yellow", "interrupted": "magenta"}
    for r in rows:
        duration = f"{r['duration_ms'] / 1000:.2f}s" if r["duration_ms"] is not None else "-"
        table.add_row(r["id"], _when(r["started"]), r["agent"], r["model"],
                      f"[{styles.get(r['status'], 'white')}]{r['status']}[/]", duration,
                      f"{r['prompt_tokens']}+{r['completion_tokens']}", r["input"][:40])
    console = Console()
    console.print(table if rows else "[dim]No runs yet: try `halguru run PATH \"Hello\"`.[/]")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@app.command()
def show(
    run_id: str = typer.Argument(..., help="A run id (or a unique prefix) from `halguru logs`."),
    json_output: bool = typer.Option(False, "--json", help="Print the run and its events as JSON."),
) -> None:
    """Print the event tree of a run."""
    from rich.console import Console

    from halguru.cli.render import trace_tree
    from halguru.store import open_store

    store = open_store()
    run = store.get_run(run_id)
    events = store.get_events(run["id"])
    if json_output:
        typer.echo(json.dumps({"run": run, "events": events}, indent=2, ensure_ascii=False))
        return
    Console().print(trace_tree(run, events))


@app.command()
def export(
    run_id: str = typer.Argument(..., help="A run id (or unique prefix); its conversation up to it is exported."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the test file here (tests/test_*.yaml)."),
) -> None:
    """Turn a stored run into a conversation test case (YAML for `halguru test`)."""
    from halguru.store import open_store
    from halguru.testing.export import run_to_test_yaml

    text = run_to_test_yaml(open_store(), run_id)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"Wrote {output}")
