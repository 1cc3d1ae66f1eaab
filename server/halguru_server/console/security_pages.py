"""Security (``/admin/security``, ``security:read``: admins and operators): see ``security.report``;
``GET /v1/security`` is the same as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from halguru_server.bodies import GuardedRoute
from halguru_server.console import security, shell
from halguru_server.errors import responses
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["console"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Officer = Annotated[Principal, Depends(require("security:read"))]
State = Annotated[ServerState, Depends(state_of)]
Days = Annotated[int, Query(ge=1, le=90, description="the window, in days")]
Unused = Annotated[int, Query(ge=1, le=3650, description="keys unused for at least this many days")]


@router.get("/security")
def security_page(request: Request, state: State, caller: Officer, days: Days = 7, unused: Unused = 30) -> HTMLResponse:
    """The overview, with filters for the window and the unused-key age."""
    found = security.report(state, request.app, days, unused)
    fields = [{"name": "days", "label": "Window (days)", "type": "number", "value": days, "min": 1, "max": 90},
              {"name": "unused", "label": "Keys unused for (days)", "type": "number", "value": unused, "min": 1,
               "max": 3650}]  # the bounds of Days and Unused
    return shell.render(request, caller, "security.html", "Security", r=found, fields=fields)


@api.get("/security")
def security_json(request: Request, state: State, caller: Officer, days: Days = 7, unused: Unused = 30
                  ) -> dict[str, Any]:
    """Failed sign-ins, locked accounts, second-factor events, refused requests by principal and route, refused
    tool calls, keys unused for ``unused`` days, and the daily summary (newest day first)."""
    return security.report(state, request.app, days, unused)
