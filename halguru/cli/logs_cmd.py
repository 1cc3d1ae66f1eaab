"""`halguru logs`: recent runs and their event trees."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

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

    from halguru.store import open_store

    store = open_store()
    if conversations:
        found = store.list_conversations(limit=limit, agent=agent)
        if json_output:
            typer.echo(json.dumps(found, indent=2))
            return
        chats = [(r["id"], r["agent"], str(r["messages"]), _when(r["updated"]), r["title"]) for r in found]
        table = _table(["conversation", "agent", "messages", "updated", "title"], chats, ("agent", "title"))
        for chat in chats:
            table.add_row(*chat)
        Console().print(table)
        return
    runs = store.list_runs(limit=limit, agent=agent, conversation_id=conversation)
    if json_output:
        typer.echo(json.dumps(runs, indent=2))
        return
    from halguru.agents.describe import STATUS_STYLES

    cells = [(r["id"], _when(r["started"]), r["agent"], r["model"], r["status"],
              f"{r['duration_ms'] / 1000:.2f}s" if r["duration_ms"] is not None else "-",
              f"{r['prompt_tokens']}+{r['completion_tokens']}", " ".join(r["input"].split())) for r in runs]
    table = _table(["run", "when", "agent", "model", "status", "duration", "tokens", "input"], cells,
                   ("agent", "model", "input"))
    for row in cells:
        status = f"[{STATUS_STYLES.get(row[4], 'white')}]{row[4]}[/]"
        table.add_row(*row[:4], status, *row[5:])
    console = Console()
    console.print(table if runs else "[dim]No runs yet: try `halguru run PATH \"Hello\"`.[/]")


def _table(headers: list[str], cells: Sequence[tuple[str, ...]], flexible: tuple[str, ...]) -> Table:
    """Ids, times and figures keep their full text; the ``flexible`` columns give way on narrow terminals."""
    from rich.table import Column, Table

    columns: list[Column] = []
    for i, header in enumerate(headers):
        width = max([len(header), *(len(c[i]) for c in cells)])
        if header in flexible:
            last = i == len(headers) - 1
            columns.append(Column(header, no_wrap=True, overflow="ellipsis", min_width=min(width, 12),
                                  ratio=1 if last else None))
        else:
            columns.append(Column(header, no_wrap=True, min_width=width))
    return Table(*columns, box=None, header_style="bold")


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


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
    Console().print(trace_tree(run, events))  # parses the stored events once


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
