"""Audit (``/admin/audit``, ``audit:read``): the hash-chained log, newest first, filtered by action (a name or a
prefix ending in '.'), actor and a date range (``from`` and ``to``: UTC days, both included), paged by ``seq``;
"Export CSV" (``/admin/audit/export.csv``) downloads every entry the filters match, not only the page shown;
"Verify chain" walks the whole chain as ``halguru audit verify`` and ``POST /v1/audit/verify`` do (the same
``halguru.audit.verify``). The JSON twin is ``GET /v1/audit`` (``since``/``until`` in epoch seconds)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from halguru import audit
from halguru.store.base import Store
from halguru_server.console import shell
from halguru_server.errors import ApiError
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Auditor = Annotated[Principal, Depends(require("audit:read"))]
State = Annotated[ServerState, Depends(state_of)]
PAGE = 50
EXPORT_BATCH = 1000
Text = Annotated[str | None, Query(max_length=200)]
Day = Annotated[str | None, Query(max_length=10)]


@dataclass(frozen=True)
class Filters:
    """The page's filters as typed (kept in the URL: a reload, a bookmark and Back show the same entries)."""

    action: str | None = None
    actor: str | None = None
    start: str | None = None  # "from": a UTC day, YYYY-MM-DD
    end: str | None = None  # "to": a UTC day, included

    def query(self, **more: Any) -> dict[str, Any]:
        pairs = (("action", self.action), ("actor", self.actor), ("from", self.start), ("to", self.end),
                 *more.items())
        return {k: v for k, v in pairs if v}

    def bounds(self) -> tuple[float | None, float | None]:
        """``since`` and ``until`` in epoch seconds; a clear 400 for a date that is not one."""
        since = _day(self.start, "from")
        until = _day(self.end, "to")
        if since is not None and until is not None and until < since:
            raise ApiError(400, f"to {self.end} is before from {self.start}")
        return since, None if until is None else until + 86400

    def rows(self, store: Store, limit: int, before: int | None = None) -> list[Any]:
        since, until = self.bounds()
        return store.list_audit(limit, action=self.action or None, actor=_actor(store, self.actor), since=since,
                                until=until, before=before)


def _actor(store: Store, typed: str | None) -> str | None:
    """The actor as the log records it: an email typed is that user's ``user:<id>`` (an operator knows the
    person, not their id; the log's entries name the id), as the conversation search's owner filter takes it."""
    typed = (typed or "").strip()
    if "@" in typed and ":" not in typed:
        user = store.user_by_email(typed.lower())
        return f"user:{user['id']}" if user else "user:"  # nobody's
    return typed or None


def _day(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name}: {text!r} is not a date; give one as YYYY-MM-DD") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _page(request: Request, state: ServerState, caller: Principal, filters: Filters, before: int | None,
          **extra: Any) -> HTMLResponse:
    rows = filters.rows(state.store, PAGE + 1, before)
    entries = rows[:PAGE]
    older = None
    if len(rows) > PAGE:
        older = "/admin/audit?" + urlencode(filters.query(before=entries[-1]["seq"]))
    table = [[e["seq"], shell.stamp(e["time"]), e["actor"], e["action"], e["target"],
              json.dumps(e["details"], sort_keys=True)[:200] if e["details"] else "", e["address"] or ""]
             for e in entries]
    fields = [{"name": "action", "label": "Action (or prefix, e.g. user.)", "value": filters.action},
              {"name": "actor", "label": "Actor (an email, user:<id>, cli:<user>, dev)", "value": filters.actor},
              {"name": "from", "label": "From (UTC day)", "value": filters.start, "type": "date"},
              {"name": "to", "label": "To (UTC day, included)", "value": filters.end, "type": "date"}]
    filtered = any(filters.query().values())
    empty = "No entries match these filters: widen them or Clear." if filtered else "No entries yet."
    export = "/admin/audit/export.csv" + ("?" + urlencode(filters.query()) if filtered else "")
    return shell.render(request, caller, "audit.html", "Audit log", rows=table, fields=fields, older=older,
                        empty=empty, export=export, **extra)


@router.get("/audit")
def audit_page(request: Request, state: State, caller: Auditor, action: Text = None, actor: Text = None,
               start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
               end: Annotated[str | None, Query(alias="to", max_length=10)] = None,
               before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HTMLResponse:  # SQLite: 64 bits
    """The log, newest first."""
    return _page(request, state, caller, Filters(action, actor, start, end), before)


@router.get("/audit/export.csv")
def export_csv(state: State, caller: Auditor, action: Text = None, actor: Text = None,
               start: Annotated[str | None, Query(alias="from", max_length=10)] = None,
               end: Annotated[str | None, Query(alias="to", max_length=10)] = None) -> StreamingResponse:
    """Every entry the filters match as CSV, newest first (read a batch at a time: memory stays flat)."""
    filters = Filters(action, actor, start, end)
    filters.bounds()  # a bad date: the page saying so, not a broken download

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["seq", "time_utc", "actor", "action", "target", "details", "address", "hash"])
        before = None
        while True:
            batch = filters.rows(state.store, EXPORT_BATCH, before)
            for e in batch:
                stamp = datetime.fromtimestamp(e["time"], UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                details = json.dumps(e["details"], sort_keys=True, ensure_ascii=False) if e["details"] else ""
                writer.writerow([e["seq"], stamp, *(_cell(v) for v in (e["actor"], e["action"], e["target"],
                                                                       details, e["address"] or "")), e["hash"]])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(batch) < EXPORT_BATCH:
                return
            before = batch[-1]["seq"]

    name = f"halguru-audit-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers={**shell.HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (a formula) gets a leading quote."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.post("/audit/verify")
def verify_page(request: Request, state: State, caller: Auditor) -> HTMLResponse:
    """Walk the chain: intact (and its head hash), or the first broken entry and why."""
    check, message = audit.verify(state.store)
    outcome = {"notice": message} if check["ok"] else {"error": message}
    return _page(request, state, caller, Filters(), None, verified=check, **outcome)
