"""Operations endpoints: liveness, readiness, Prometheus metrics and a human status page."""

from __future__ import annotations

import html
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response

from halguru_server.state import ServerState, get_state

router = APIRouter(tags=["operations"])
State = Annotated[ServerState, Depends(get_state)]


def components(state: ServerState) -> dict[str, dict[str, Any]]:
    """Each component's state: the store (writable?), and each model (loaded? queue depth)."""
    result: dict[str, dict[str, Any]] = {}
    try:
        state.store.ping()
        result["store"] = {"ok": True, "detail": "writable"}
    except Exception as exc:
        result["store"] = {"ok": False, "detail": f"not writable: {exc}"}
    from halguru.models.registry import get_model

    for model in sorted({s.model for s in state.agents.values()}):
        try:
            obj = get_model(model)
            missing = getattr(obj, "path", None) is not None and not obj.path.is_file()  # type: ignore[attr-defined]
            detail = f"file missing: {obj.path}" if missing else "ready"  # type: ignore[attr-defined]
            result[f"model:{model}"] = {"ok": not missing, "detail": detail, "queued": state.gate.depth(model)}
        except Exception as exc:
            result[f"model:{model}"] = {"ok": False, "detail": str(exc), "queued": state.gate.depth(model)}
    result["server"] = {"ok": not state.draining, "detail": "shutting down" if state.draining else "accepting"}
    return result


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
def readyz(state: State) -> JSONResponse:
    """Ready: models resolvable and their files present, the store writable, not shutting down."""
    parts = components(state)
    ok = all(p["ok"] for p in parts.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "components": parts}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(state: State) -> Response:
    """Prometheus text format."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/status", response_class=HTMLResponse)
def status_page(state: State) -> HTMLResponse:
    """A page for people: each component, the agents, uptime."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class={'ok' if p['ok'] else 'bad'}>{'ok' if p['ok'] else 'down'}"
        f"</td><td>{html.escape(str(p['detail']))}</td><td>{p.get('queued', '')}</td></tr>"
        for name, p in components(state).items())
    agents = "".join(f"<li>{html.escape(n)} ({html.escape(s.model)}, web chat {s.web_chat})</li>"
                     for n, s in state.agents.items())
    uptime = int(time.time() - state.started)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>halguru status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}td,th{{padding:.3rem .8rem;text-align:left}}
.ok{{color:#070}}.bad{{color:#b00}}</style></head><body><h1>halguru status</h1>
<p>Up {uptime} s{' · dev mode (no API keys)' if state.settings.dev else ''}.</p>
<table><tr><th>component</th><th>state</th><th>detail</th><th>queued</th></tr>{rows}</table>
<h2>Agents</h2><ul>{agents}</ul>
<p><a href="/swagger">API docs</a> · <a href="/chat/">web chat</a> · <a href="/metrics">metrics</a></p>
</body></html>"""
    return HTMLResponse(page)
