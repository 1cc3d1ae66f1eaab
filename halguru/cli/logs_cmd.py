"""`halguru logs`: recent runs and their event trees."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from halguru.durations import parse_duration

app = typer.Typer(help="Recent runs and their traces.", invoke_without_command=True)

STATUSES = ("running", "ok", "failed", "paused", "limited", "cancelled", "interrupted")
RUN_HEADERS = ["run", "when", "agent", "model", "status", "took", "tokens", "input"]
RUN_FLEXIBLE = ("agent", "model", "input")


@app.callback()
def logs(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many runs."),
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's runs."),
    status: str | None = typer.Option(None, "--status", help=f"Only runs with this status: {', '.join(STATUSES)}."),
    since: str | None = typer.Option(None, "--since", help="Only runs started this long ago or less: 30m, 1h, 2d."),
    conversation: str | None = typer.Option(None, "--conversation", "-c", help="Only this conversation's runs "
                                                        "('last': the newest, of --agent if given)."),
    job: str | None = typer.Option(None, "--job", help="Only the runs this job started (its id or a unique "
                                                        "prefix, from `halguru jobs list`)."),
    all_runs: bool = typer.Option(False, "--all", "-a", help="Include the runs (or conversations) `halguru test` "
                                                             "and `eval` made."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing runs as they finish (Ctrl-C stops)."),
    conversations: bool = typer.Option(False, "--conversations", help="List conversations instead of runs."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output (JSON lines with --follow)."),
) -> None:
    """List recent runs (agent, model, status, duration, tokens); runs made by `halguru test` only with --all."""
    if ctx.invoked_subcommand is not None:
        return
    from halguru.cli.table import print_table
    from halguru.errors import HalguruError
    from halguru.store import open_store

    if status is not None and status not in STATUSES:
        raise HalguruError(f"--status: unknown status {status!r}; use one of {', '.join(STATUSES)}")
    started_after = time.time() - parse_duration(since, "--since") if since is not None else None
    store = open_store()
    if conversations:
        ignored = [name for name, value in (("--status", status), ("--since", since), ("--conversation", conversation),
                                            ("--job", job), ("--follow", follow)) if value]
        if ignored:  # said, not silently ignored
            raise HalguruError(f"{', '.join(ignored)}: filter runs, not --conversations (which takes --agent, "
                               "--all, --limit and --json)")
        found = store.list_conversations(limit=limit, agent=agent, test_runs=all_runs)
        if json_output:
            typer.echo(json.dumps(found, indent=2))
            return
        chats = [(r["id"], r["agent"], str(r["messages"]), _when(r["updated"]), r["title"]) for r in found]
        if chats:
            print_table(["conversation", "agent", "messages", "updated", "title"], chats, ("agent", "title"))
        else:
            typer.echo(f"No conversations of agent {agent!r}." if agent else "No conversations yet.")
        return
    if conversation is not None:
        from halguru.agents.session import listed_conversation

        conversation = listed_conversation(store, conversation, agent)
    job_known = True
    if job:
        record = store.find_job(job)
        job_known = record is not None
        if record is not None:
            job = record["id"]  # a prefix, as `jobs show` takes; an id whose job was pruned still names its runs
    query: dict[str, Any] = dict(agent=agent, conversation_id=conversation, status=status, since=started_after,
                                 job_id=job, test_runs=all_runs or conversation is not None)
    runs = store.list_runs(limit=limit, **query)
    if json_output and not follow:
        typer.echo(json.dumps(runs, indent=2))
        return
    if follow:
        _follow(store, runs, query, json_output)
        return
    if not runs:
        tests_hidden = not query["test_runs"] and store.list_runs(limit=1, **{**query, "test_runs": True})
        hidden = " (runs made by `halguru test` show with --all)" if tests_hidden else ""
        narrowed = agent or status or since or conversation or job
        if agent and not tests_hidden and agent not in (names := store.run_agents()):  # a misspelt name, say so
            from halguru.errors import did_you_mean

            hint = did_you_mean(agent, names) or (f"; agents with runs: {', '.join(names[:10])}"
                                                  f"{', …' if len(names) > 10 else ''}" if names else "")
            typer.echo(f"No runs match: no run is of agent {agent!r}{hint}.")
            return
        if not job_known:  # a misspelt id read as a job that started nothing
            typer.echo(f"No runs match: no job {job!r} (`halguru jobs list` shows them).")
            return
        typer.echo(f"No runs match{hidden}." if narrowed else f"No runs yet: try `halguru run PATH \"Hello\"`{hidden}.")
        return
    print_table(RUN_HEADERS, [_cells(r) for r in runs], RUN_FLEXIBLE, _STYLES)


def _status_style(status: str) -> str:
    from halguru.agents.describe import STATUS_STYLES

    return STATUS_STYLES.get(status, "white")


_STYLES = {"status": _status_style}


def _cells(r: Any) -> tuple[str, ...]:
    return (r["id"], _when(r["started"]), r["agent"], r["model"], r["status"],
            f"{r['duration_ms'] / 1000:.2f}s" if r["duration_ms"] is not None else "-",
            f"{r['prompt_tokens']}+{r['completion_tokens']}", r["input"])


def _follow(store: Any, shown: list[Any], query: dict[str, Any], json_output: bool, interval: float = 1.0) -> None:
    """Print the runs so far (oldest first), then each run as it finishes, until Ctrl-C."""
    from halguru.cli.table import print_table

    window = 200  # runs looked at per poll: more than this many finishing within one poll would be missed
    # every run already ended counts as seen, not only the ones shown (-n): they are not news
    done = {r["id"] for r in [*shown, *store.list_runs(limit=window, **query)] if r["status"] != "running"}
    widths: list[int] | None = None

    def emit(rows: list[Any]) -> None:
        nonlocal widths
        if json_output:
            for r in rows:
                typer.echo(json.dumps(r))
            return
        template = ("run_" + "0" * 17, _when(time.time()), "x" * 12, "x" * 12, "interrupted", "000.00s",
                    "00000+0000", "x" * 40)  # keeps the columns wide enough for the runs to come
        header = widths is None
        if widths is None:
            widths = _widths(RUN_HEADERS, [template, *map(_cells, rows)])
        print_table(RUN_HEADERS, [_cells(r) for r in rows], RUN_FLEXIBLE, _STYLES, header=header, widths=widths)

    emit(list(reversed([r for r in shown if r["status"] != "running"])))
    try:
        while True:
            time.sleep(interval)
            recent = store.list_runs(limit=window, **query)
            new = [r for r in reversed(recent) if r["status"] != "running" and r["id"] not in done]
            done.update(r["id"] for r in new)
            if new:
                emit(new)
    except KeyboardInterrupt:
        return


def _widths(headers: list[str], rows: list[tuple[str, ...]]) -> list[int]:
    from halguru.cli.table import fit_widths, target_width

    return fit_widths(headers, rows, RUN_FLEXIBLE, target_width())


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


@app.command()
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Delete runs started longer ago than this: 30d, 12h."),
) -> None:
    """Delete old runs with their traces, approvals and checkpoints (and conversations left empty), jobs
    that finished as long ago, and message idempotency keys older than a day. Runs waiting for approval, and
    interrupted runs `halguru runs resume` can continue, stay."""
    from halguru.errors import HalguruError
    from halguru.store import open_store

    seconds = parse_duration(older_than, "--older-than")
    if seconds <= 0:
        raise HalguruError(f"--older-than: {older_than!r} must be longer than zero, e.g. 30d")
    count = open_store().prune_runs(time.time() - seconds)
    typer.echo(f"Deleted {count} run{'s' if count != 1 else ''} started more than {older_than} ago.")


@app.command()
def show(
    run_id: str = typer.Argument(..., help="A run id (or a unique prefix) from `halguru logs`, or 'last'."),
    json_output: bool = typer.Option(False, "--json", help="Print the run and its events as JSON."),
) -> None:
    """Print the event tree of a run."""
    from halguru.agents.session import run_reference
    from halguru.cli.render import trace_tree
    from halguru.cli.table import stdout_console
    from halguru.store import open_store

    store = open_store()
    run = store.get_run(run_reference(store, run_id))
    events = store.get_events(run["id"])
    if json_output:
        from halguru.agents.describe import parse_events, run_cost

        cost = run_cost(parse_events(events, run["id"]))  # USD; null where a model used has no price
        typer.echo(json.dumps({"run": run, "events": events, "cost_usd": cost}, indent=2, ensure_ascii=False))
        return
    stdout_console().print(trace_tree(run, events))  # parses the stored events once


@app.command()
def replay(
    run_id: str = typer.Argument(..., help="A run id (or a unique prefix) from `halguru logs`, or 'last'."),
    json_output: bool = typer.Option(False, "--json", help="The outcome as JSON."),
) -> None:
    """Replay a stored run from its records (no model or tool is called) and say whether it reproduces the run;
    exit 0 when it does (the same answer, and no event that differs for no known reason), 1 otherwise (as
    `halguru dev`'s F7, for scripts and CI)."""
    import asyncio

    from halguru.agents.replay import compare_runs, load_run
    from halguru.agents.replay import replay as replay_run
    from halguru.store import open_store
    from halguru.tui.replaying import explain, verdict

    stored = load_run(open_store(), run_id)

    async def events() -> list[Any]:
        return [event async for event in replay_run(stored)]

    again = asyncio.run(events())
    comparison = compare_runs(stored.events, again, "recorded", "replay")
    why = explain(stored.events, again)
    outcome, good = verdict(comparison.same_answer, why)
    if json_output:
        typer.echo(json.dumps({"run_id": stored.id, "reproduced": good, "same_answer": comparison.same_answer,
                               "differences": why.count, "outcome": outcome}, indent=2))
    else:
        typer.echo(f"replay of {stored.id}: {outcome}")
        if not why.identical and not why.failed:  # a run that cannot be replayed: the outcome says why, alone
            typer.echo(why.text(comparison.tree_diff))
    raise typer.Exit(0 if good else 1)


@app.command()
def conversation(
    conversation_id: str = typer.Argument(..., help="A conversation id from `halguru logs --conversations`, or "
                                          "'last' (the newest there)."),
    json_output: bool = typer.Option(False, "--json", help="The conversation and its messages as JSON."),
) -> None:
    """Print a conversation's transcript: each message in order, tool calls and results included."""
    from halguru.agents.session import listed_conversation
    from halguru.errors import HalguruError
    from halguru.printable import printable, printable_name
    from halguru.store import open_store

    store = open_store()
    conversation_id = listed_conversation(store, conversation_id)  # `last` as in `logs show last`, `run -c last`
    found = store.get_conversation(conversation_id)
    if found is None:  # runs whose conversation is not stored: no transcript to print
        raise HalguruError(f"no conversation {conversation_id!r}; `halguru logs --conversations` lists them")
    messages = store.get_messages(conversation_id)
    if json_output:
        typer.echo(json.dumps({"conversation": found, "messages": [m.model_dump(exclude_defaults=True)
                                                                    for m in messages]}, indent=2,
                              ensure_ascii=False))
        return
    typer.echo(printable(f"{found['id']} · agent {found['agent']} · {len(messages)} messages · {found['title']!r}"))
    for message in messages:  # every name and text here came from outside (a model, a tool, a client)
        who = f"tool {message.name}" if message.role == "tool" and message.name else message.role
        # each message under its own speaker (a call-only one too), a long text's further lines indented: no line
        # of a message reads as another message (`assistant: ...` inside a tool result or a visitor's text)
        text = printable(message.content).replace("\n", "\n  ")
        if text or message.tool_calls:
            typer.echo(f"\n{printable_name(who)}:{f' {text}' if text else ''}")
        for call in message.tool_calls:
            typer.echo(f"  → {printable_name(call.name)}({printable(json.dumps(call.arguments, ensure_ascii=False))})")


@app.command()
def export(
    run_id: str = typer.Argument(..., help="A run id (or unique prefix, or 'last'); its conversation up to it is "
                                           "exported."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the test file here (tests/test_*.yaml)."),
    force: bool = typer.Option(False, "--force", help="Replace the --output file if it exists."),
) -> None:
    """Turn a stored run into a conversation test case (YAML for `halguru test`)."""
    from halguru.agents.session import run_reference
    from halguru.errors import HalguruError
    from halguru.store import open_store
    from halguru.testing.export import run_to_test_yaml

    if output is not None and output.exists() and not force:  # a test file you edited is not overwritten
        raise HalguruError(f"{output} exists already; pass --force to replace it, or choose another file")
    if output is not None and not output.absolute().parent.is_dir():
        raise HalguruError(f"{output}: No such file or directory (the folder {output.parent} does not exist)")
    store = open_store()
    text = run_to_test_yaml(store, run_reference(store, run_id))
    if output is None:
        typer.echo(text, nl=False)
    else:
        from halguru.atomic import write_atomically

        write_atomically(output, text)
        typer.echo(f"Wrote {output}")


