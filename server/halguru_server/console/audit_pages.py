"""Audit (``/admin/audit``, ``audit:read``): the hash-chained log, newest first, filtered by action (a name or a
prefix ending in '.') and actor, paged by ``seq``; "Verify chain" walks the whole chain as
``halguru audit verify`` and ``POST /v1/audit/verify`` do (the same ``halguru.audit.verify``)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse

from halguru import audit
from halguru_server.console import shell
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Auditor = Annotated[Principal, Depends(require("audit:read"))]
State = Annotated[ServerState, Depends(state_of)]
PAGE = 50
Text = Annotated[str | None, Query(max_length=200)]


def _page(request: Request, state: ServerState, caller: Principal, action: str | None, actor: str | None,
          before: int | None, **extra: Any) -> HTMLResponse:
    rows = state.store.list_audit(PAGE + 1, action=action or None, actor=actor or None, before=before)
    entries = rows[:PAGE]
    older = None
    if len(rows) > PAGE:
        older = "/admin/audit?" + urlencode({k: v for k, v in (("action", action), ("actor", actor),
                                                                ("before", entries[-1]["seq"])) if v})
    table = [[e["seq"], shell.when(e["time"]), e["actor"], e["action"], e["target"],
              json.dumps(e["details"], sort_keys=True)[:200] if e["details"] else "", e["address"] or ""]
             for e in entries]
    fields = [{"name": "action", "label": "Action (or prefix, e.g. user.)", "value": action},
              {"name": "actor", "label": "Actor (user:<id>, cli:<user>, dev)", "value": actor}]
    return shell.render(request, caller, "audit.html", "Audit log", rows=table, fields=fields, older=older,
                        **extra)


@router.get("/audit")
def audit_page(request: Request, state: State, caller: Auditor, action: Text = None, actor: Text = None,
               before: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HTMLResponse:  # SQLite: 64 bits
    """The log, newest first."""
    return _page(request, state, caller, action, actor, before)


@router.post("/audit/verify")
def verify_page(request: Request, state: State, caller: Auditor) -> HTMLResponse:
    """Walk the chain: intact (and its head hash), or the first broken entry and why."""
    check, message = audit.verify(state.store)
    outcome = {"notice": message} if check["ok"] else {"error": message}
    return _page(request, state, caller, None, None, None, verified=check, **outcome)
