"""What `halguru audit` does: read the audit log and verify its hash chain from the server's shell (the plugin
module keeps only the argument parsing). Exit 1 from ``verify`` when the chain is broken, so a cron job or a
monitor can alert on it."""

from __future__ import annotations

import datetime as dt
import json
import time

import typer

from halguru import audit
from halguru.errors import HalguruError
from halguru.printable import printable
from halguru.store import open_store


def parse_since(text: str, option: str = "--since") -> float:
    """``24h``, ``7d`` (that long ago) or an ISO date/time (UTC unless it says otherwise), as epoch seconds; for
    ``--until`` a date alone is the end of that day, so that ``--since D --until D`` is the whole day D."""
    from halguru.durations import parse_duration

    if text[-1:] in "smhdw" and text[:-1].strip().isascii() and text[:-1].strip().isdigit():
        return time.time() - parse_duration(text, option)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HalguruError(f"{option} {text!r}: give a duration (24h, 7d) or a date (2026-12-01)") from None
    if option == "--until" and len(text.strip()) == 10:  # a date alone: through its end
        when += dt.timedelta(days=1)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def show(action: str | None, actor: str | None, since: str | None, limit: int, json_output: bool,
         until: str | None = None) -> None:
    rows = open_store().list_audit(limit, action=action, actor=actor,
                                   since=parse_since(since) if since else None,
                                   until=parse_since(until, "--until") if until else None)
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("No audit entries.")
        return
    for r in rows:
        when = dt.datetime.fromtimestamp(r["time"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        details = json.dumps(r["details"], ensure_ascii=False, sort_keys=True) if r["details"] else ""
        where = f"  from {r['address']}" if r["address"] else ""
        typer.echo(printable(f"{r['seq']:>6}  {when}  {r['actor']}  {r['action']}  {r['target']}  {details}{where}"
                             .rstrip()))  # names and details from API clients: their control characters shown


def verify() -> None:
    check, line = audit.verify(open_store())
    typer.echo(line, err=not check["ok"])
    if not check["ok"]:
        raise typer.Exit(1)
