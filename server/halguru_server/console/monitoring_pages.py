"""Monitoring (``/admin``): every served agent with its numbers, live."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from halguru_server.console import shell
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, get_state

router = shell.page_router()
Viewer = Annotated[Principal, Depends(require("metrics:read"))]
State = Annotated[ServerState, Depends(get_state)]


@router.get("")
def monitoring(request: Request, state: State, caller: Viewer) -> HTMLResponse:
    """The agents and their numbers (placeholder until the aggregates land)."""
    rows = [[name, served.agent.spec.model] for name, served in sorted(state.agents.items())]
    return shell.render(request, caller, "monitoring.html", "Monitoring", rows=rows)
