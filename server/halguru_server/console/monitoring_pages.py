"""Monitoring (``/admin``): every served agent with its model, version, state, runs per minute, error rate,
p50/p95 latency, tokens, queue depth and last error, and charts; the numbers refresh every few seconds
(``/admin/monitoring/live``, swapped in by console.js). ``GET /v1/monitoring`` is the same as JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from halguru_server.bodies import GuardedRoute
from halguru_server.console import charts, monitor, shell, status_pages
from halguru_server.errors import responses
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["console"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Viewer = Annotated[Principal, Depends(monitor.every_agent)]  # metrics:read, and no key limited to some agents
State = Annotated[ServerState, Depends(state_of)]
Window = Annotated[str, Query(pattern="^(15m|1h|24h|7d)$", description="15m, 1h, 24h or 7d")]


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def _view(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as the templates show it: table rows, tiles and the charts' SVG."""
    fmt = "%H:%M" if snap["window"] in ("15m", "1h", "24h") else "%m-%d"
    labels = [datetime.fromtimestamp(b["start"], UTC).strftime(fmt) for b in snap["timeline"]]
    totals = snap["totals"]
    bounds = [_ms(b) for b in snap["latency"]["bounds_ms"]]
    return {
        "snap": snap, "ms": _ms,
        "tiles": [("Runs", f"{totals['runs']:,}"), ("Runs/min (5 min)", f"{totals['runs_per_min']:.1f}"),
                  ("Error rate", f"{totals['error_rate']:.1%}"), ("Tokens", f"{totals['tokens']:,}"),
                  ("Queued", str(totals["queued"]))],
        "timeline_svg": charts.columns([b["runs"] for b in snap["timeline"]], labels,
                                       f"Runs per interval, errors in red; {totals['runs']} runs, "
                                       f"{totals['errors']} errors", over=[b["errors"] for b in snap["timeline"]],
                                       every=6),
        "latency_svg": charts.columns(snap["latency"]["counts"], [f"≤{b}" for b in bounds] + ["more"],
                                      "Runs by duration", every=2),
        "tokens_svg": charts.bars(sorted(((a["agent"], a["tokens"]) for a in snap["agents"]),
                                         key=lambda item: -item[1]), "Tokens per agent"),
    }


@router.get("")
def monitoring(request: Request, state: State, caller: Viewer, window: Window = "1h") -> HTMLResponse:
    """The page (its live part rendered in, then refreshed by console.js)."""
    view = _view(monitor.snapshot(state, window))
    return shell.render(request, caller, "monitoring.html", "Monitoring", windows=list(monitor.WINDOWS), **view)


@router.get("/monitoring/live")
def monitoring_live(request: Request, state: State, caller: Viewer, window: Window = "1h") -> HTMLResponse:
    """The page's live part alone (its polling also samples the status history)."""
    status_pages.sample(request.app, state)
    return shell.fragment("monitoring_live.html", **_view(monitor.snapshot(state, window)))


@api.get("/monitoring")
def monitoring_json(state: State, caller: Viewer, window: Window = "1h") -> dict[str, Any]:
    """Each agent's numbers over the window (runs, errors, error rate, runs/min over 5 minutes, p50/p95 ms,
    tokens, queue depth, last error), totals, a 24-interval timeline and the latency histogram."""
    return monitor.snapshot(state, window)
