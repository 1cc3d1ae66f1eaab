"""Analytics (``/admin/analytics``, ``metrics:read``: developers too): see ``analytics.report``;
``GET /v1/analytics`` is the same as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from halguru_server.bodies import GuardedRoute
from halguru_server.console import analytics, charts, monitor, shell
from halguru_server.costly import Costly
from halguru_server.errors import responses
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["console"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Viewer = Annotated[Principal, Depends(monitor.every_agent)]  # metrics:read, and no key limited to some agents
State = Annotated[ServerState, Depends(state_of)]
Days = Annotated[int, Query(ge=1, le=366, description="the window, in days")]  # the form's field says so too


@router.get("/analytics")
def analytics_page(request: Request, state: State, caller: Viewer, _: Costly, days: Days = 14) -> HTMLResponse:
    """The numbers, with charts of runs per day and how runs ended."""
    found = analytics.report(state, days)
    per_day = list(reversed(found["per_day"]))
    runs_svg = charts.columns([d["runs"] for d in per_day], [d["day"][5:] for d in per_day],
                              "Runs per day, failed ones in red", over=[d["errors"] for d in per_day],
                              every=max(1, len(per_day) // 7))
    ended_svg = charts.bars(sorted(found["resolution"].items(), key=lambda kv: -kv[1]), "How runs ended")
    fields = [{"name": "days", "label": "Window (days)", "type": "number", "value": days, "min": 1, "max": 366}]
    return shell.render(request, caller, "analytics.html", "Analytics", r=found, fields=fields, runs_svg=runs_svg,
                        ended_svg=ended_svg)


@api.get("/analytics", responses=responses(503))
def analytics_json(state: State, caller: Viewer, _: Costly, days: Days = 14) -> dict[str, Any]:
    """Per day (newest first) runs, outcomes, conversations and tokens; messages per day, channel and agent;
    resolution; handoffs; top tools; tokens and cost per agent and model."""
    return analytics.report(state, days)
