"""The conversation search as CSV (``/admin/conversations/export.csv``, ``conversations:read_all``): every
conversation the page's filters match, not only the page shown, newest activity first, a batch at a time (memory
stays flat), one row each: id, title, agent, channel, user, messages, last run, started and active (UTC).
Its module name sorts before ``conversations_pages``: the route is added before ``/conversations/{id}``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query
from fastapi.responses import StreamingResponse

from halguru_server import conversations_api
from halguru_server.console import shell
from halguru_server.console.audit_pages import _cell
from halguru_server.console.conversations_pages import _people
from halguru_server.costly import Costly
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Reader = Annotated[Principal, Depends(require("conversations:read_all"))]
State = Annotated[ServerState, Depends(state_of)]
Field = Annotated[str | None, Query(max_length=200)]
BATCH = 200
COLUMNS = ["id", "title", "agent", "channel", "user", "messages", "last_status", "created_utc", "updated_utc"]


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.get("/conversations/export.csv")
def export_csv(state: State, caller: Reader, _: Costly, q: Field = None, agent: Field = None, channel: Field = None,
               owner: Field = None, status: Field = None, since: Field = None,
               until: Field = None) -> StreamingResponse:
    """Every conversation the filters match as CSV (a bad filter: the page saying so, not a broken download)."""
    values = {"q": q, "agent": agent, "channel": channel, "owner": owner, "status": status, "since": since,
              "until": until}
    first, cursor = conversations_api.search(state, caller, **values, limit=BATCH)

    def lines() -> Iterator[str]:
        nonlocal cursor
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        rows = first
        while True:
            people = _people(state, (r["owner"] for r in rows))
            for r in rows:
                who = people.get(r["owner"] or "", r["owner"] or "")
                writer.writerow([r["id"], *(_cell(v) for v in (r["title"] or "", r["agent"], r["channel"] or "api",
                                                                who)),
                                 r["messages"], r["last_status"] or "", _utc(r["created"]), _utc(r["updated"])])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if cursor is None:
                return
            rows, cursor = conversations_api.search(state, caller, **values, limit=BATCH, cursor=cursor)

    name = f"halguru-conversations-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={**shell.HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})
