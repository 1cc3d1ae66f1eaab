"""One run from the command line: stream it, print errors as one line, pick the exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape

from halguru.agents.events import Event, RunFinished
from halguru.agents.loader import load_agent
from halguru.cli.render import RunPrinter
from halguru.printable import printable

if TYPE_CHECKING:
    from halguru.rag.indexer import IngestScope

EXIT_FAILED = 1
EXIT_PAUSED = 3  # the run waits for an approval: scripts can tell it from a finished run (0)
EXIT_INTERRUPTED = 130


def run_once(path: Path, text: str, *, json_output: bool, model: str | None, conversation: str | None,
             sampling: dict[str, Any] | None = None) -> int:
    from halguru.agents.checks import check_agent_knowledge, check_agent_model
    from halguru.agents.runtime import run
    from halguru.models.references import check_model_option

    agent = load_agent(path)
    if model is None:  # a typo is one line, not a run stored as failed (chat and dev refuse it up front too)
        check_agent_model(agent)
    check_model_option(model)
    check_agent_knowledge(agent)
    if conversation is not None:  # as `chat --conversation`: another agent's conversation is refused
        from halguru.agents.session import conversation_reference
        from halguru.errors import HalguruError
        from halguru.store import open_store

        store = open_store()
        conversation = conversation_reference(store, agent.name, conversation)
        found = store.get_conversation(conversation) if conversation else None
        if found is not None and found["agent"] != agent.name:
            raise HalguruError(f"conversation {conversation} belongs to agent {found['agent']!r}, not {agent.name!r}")
    return stream_run(lambda: run(agent, text, conversation, model=model, sampling=sampling), json_output=json_output)


def ingest_scope() -> IngestScope:
    """A scope for the knowledge ingests this run starts (an agent's first retrieval), so Ctrl-C stops
    them too and the user hears how far they got."""
    from halguru.rag.indexer import IngestScope

    return IngestScope.enter()


@contextmanager
def json_wire() -> Iterator[TextIO]:
    """stdout for the JSON lines alone: while the run streams, what a tool (or a library, or a child process)
    prints to stdout goes to stderr, so `--json | jq` reads events only (the MCP SDK does the same)."""
    original = sys.stdout
    try:
        fd = original.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (an in-process test runner): swap the object
        with redirect_stdout(sys.stderr):
            yield original
        return
    sys.stdout.flush()
    wire = os.fdopen(os.dup(fd), "w", encoding="utf-8", errors=sys.stdout.errors or "strict")
    os.dup2(sys.stderr.fileno(), fd)
    try:
        yield wire
    finally:
        sys.stdout.flush()  # a print still buffered goes where it was meant to: stderr
        wire.flush()
        os.dup2(wire.fileno(), fd)
        wire.close()


def resume_hint(run_id: str, status: str) -> str:
    """How to go on with a team or workflow run that stopped short (its checkpoint), else nothing: the way on
    from a failed step (after fixing its tool) or a limit (after raising it) was only in the README."""
    from halguru.errors import HalguruError
    from halguru.orchestration.durable import RESUMABLE
    from halguru.store import open_store

    if status not in RESUMABLE:
        return ""
    try:
        checkpoint = open_store().get_checkpoint(run_id)
    except HalguruError:
        return ""
    if checkpoint is None:
        return ""
    first = "raise the limit, then " if status == "limited" else ""
    return f"; {first}`halguru runs resume {run_id}` goes on from its finished steps"


def stream_run(make_stream: Callable[[], AsyncIterator[Event]], *, json_output: bool) -> int:
    """Print a run's events as they come (or as JSON lines) and return the exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    from halguru.cli.app import debugging

    printer = RunPrinter(err=err, debug=debugging())
    finished: list[RunFinished] = []
    started: list[str] = []  # the top-level run's id, for what a Ctrl-C says

    scopes: list[IngestScope] = []

    async def consume(out: TextIO) -> None:
        scopes.append(ingest_scope())
        try:
            async for event in make_stream():
                if json_output:
                    out.write(event.model_dump_json() + "\n")
                    out.flush()
                else:
                    printer(event)
                if isinstance(event, RunFinished):
                    finished.append(event)
                elif event.type == "run_started" and not event.parent_run_id and not started:
                    started.append(event.run_id)
        except asyncio.CancelledError:  # Ctrl-C: an ingest on a worker thread stops too, not only the run
            scopes[0].stop()
            raise

    try:
        with json_wire() if json_output else nullcontext(sys.stdout) as out:
            asyncio.run(consume(out))
    except KeyboardInterrupt:
        for line in scopes[0].stopped if scopes else []:  # asyncio.run waited for their threads
            err.print(f"\n[yellow]{escape(line[:1].upper() + line[1:])}.[/]")  # "Indexing ... stopped after ..."
        from halguru.tools.threads import running_tools

        for name in running_tools():
            err.print(f"\n[yellow]The tool {escape(name)} was still running: its thread is abandoned "
                      "(it stops when this process exits).[/]")
        hint = resume_hint(started[0], "cancelled") if started else ""  # a team's or workflow's: the way on
        err.print(f"\n[yellow]Stopped.[/] The partial answer is stored (see `halguru logs`){hint}.")
        return EXIT_INTERRUPTED
    result = finished[-1]
    if result.status == "paused":
        err.print(f"[yellow]Paused:[/] {escape(printable(result.error or ''))}: `halguru runs approve {result.run_id}` "
                  f"or `halguru runs reject {result.run_id} --reason TEXT`")
        return EXIT_PAUSED
    if result.status != "ok":
        err.print(f"[red]Error:[/] {escape(printable(result.error or result.status))} [dim](run {result.run_id}"
                  f"{resume_hint(result.run_id, result.status)})[/]")
        return EXIT_FAILED
    return 0
