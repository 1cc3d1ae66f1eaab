"""Operations endpoints: liveness, readiness, Prometheus metrics and a status page that tells the truth.

These answer without a key, so they show states, counts and the public agents only: no filesystem path,
no exception text (both go to the log), no name of a key-only agent. ``/metrics`` labels every agent for a
caller whose key (or signed-in user) may read metrics (``metrics:read``) and use that agent.
"""

from __future__ import annotations

import html
import logging
import re
import time
from contextlib import suppress
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from halguru.errors import StoreUnavailable
from halguru_server.agents import ServedAgent
from halguru_server.bodies import GuardedRoute
from halguru_server.identity.guards import public
from halguru_server.probes import PROBE_TIMEOUT_S, ProbeTimeout, one_look, within
from halguru_server.state import Principal, ServerState, client_address, resolve, state_of

router = APIRouter(tags=["operations"], dependencies=[Depends(public)],  # monitors and probes: no key
                   route_class=GuardedRoute)
State = Annotated[ServerState, Depends(state_of)]
log = logging.getLogger("halguru.server")
STUCK_GRACE_S = 60.0  # a run still 'running' this long past its agent's timeout is stuck
JOB_LATE_S = 300.0  # a due job waiting this long means no worker is keeping up


def model_label(reference: str) -> str:
    """A model reference without the folders of a file path (``scripted:/a/b/x.yaml`` -> ``scripted:x.yaml``)."""
    kind, sep, rest = reference.rpartition(":") if ":" in reference else ("", "", reference)
    name = PurePath(rest).name if ("/" in rest or "\\" in rest) else rest
    return f"{kind}{sep}{name}"


# An absolute path of two or more parts (not a URL's: no scheme, host or dot before it), or a Windows one
_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s/'\"()<>,;]+)+/([^\s/'\"()<>,;]+)"
                   r"|\b[A-Za-z]:\\(?:[^\s\\'\"]+\\)+([^\s\\'\"]+)")


def without_folders(text: str) -> str:
    """``text`` (a run's error: a model file missing or not GGUF, a tool's exception) with each absolute file path
    cut to its file's name, as ``model_label`` cuts a model reference."""
    return _PATH.sub(lambda m: m.group(1) or m.group(2), text)


def error_shown(text: str | None, caller: Principal) -> str | None:
    """A run's error as ``caller`` sees it: whole to a caller who may read metrics, else ``without_folders``."""
    return text if text is None or reads_metrics(caller) else without_folders(text)


def model_shown(reference: str, caller: Principal) -> str:
    """A model reference as ``caller`` sees it in the API (agents, runs): whole to a caller who may read metrics
    (developers, operators and admins, who run and publish the agents and read the server's logs), else
    without the folders of a file path (``model_label``), as anonymous visitors see it: a chat-only key's app
    has no business with where the server keeps its files."""
    return reference if reads_metrics(caller) else model_label(reference)


def _timeout(state: ServerState, agent: str) -> float:
    served = state.agents.get(agent)
    if served is None:
        return 600.0
    spec = served.agent.spec
    return max([spec.limits.timeout] + [s.timeout for s in (spec.team, spec.workflow) if s is not None])


def model_names(state: ServerState, named: bool) -> dict[str, str]:
    """Each served model reference -> its name on /readyz, /status and /metrics: its label (``model_label``) if a
    public agent uses it or ``named`` (a caller who may read metrics), else ``private-N`` (its file's name may be
    a key-only agent's). A workflow without a model of its own ("workflow") is left out: its steps' agents
    bring theirs."""
    public = {s.model for s in state.agents.values() if s.web_chat == "public"}
    names: dict[str, str] = {}
    private = 0
    for model in sorted({s.model for s in state.agents.values() if s.agent.workflow is None or s.model != "workflow"}):
        if model in public or named:
            names[model] = model_label(model)
        else:
            private += 1
            names[model] = f"private-{private}"
    return names


def _metric_models(state: ServerState, caller: Principal) -> dict[str, str] | None:
    """The ``model`` label values /metrics shows ``caller``: None (all, as they are) to a caller who may read
    metrics; to others each served model's values (its ``model_label``, the gate's, and its registry name,
    llama.cpp's figures') -> its /status name. A value no served model has is left out."""
    if reads_metrics(caller):
        return None
    from halguru.models.registry import find_entry

    shown: dict[str, str] = {}
    # public names last: a value a public and a key-only model share (model.gguf in two folders) is public anyway
    for model, name in sorted(model_names(state, False).items(), key=lambda item: item[1] == model_label(item[0])):
        public = name == model_label(model)
        values = {model_label(model)}
        with suppress(Exception):  # not resolvable: /readyz says so, and no figures carry its registry name
            values.add(find_entry(model).name)
        shown.update({value: value if public else name for value in values})
    return shown


def components(state: ServerState, named: bool = False) -> dict[str, dict[str, Any]]:
    """Readiness: the store (answers and takes writes), each model (resolvable, file present), the server. A
    model only key-only agents use is named when ``named`` (for a caller who may read metrics:
    ``reads_metrics``); otherwise it is ``model:private-N`` (its file's name may be the agent's)."""
    result: dict[str, dict[str, Any]] = {}
    try:
        within(PROBE_TIMEOUT_S, state.store.ping)
        result["store"] = {"ok": True, "detail": "writable"}
        state.store_log.answered()
    except ProbeTimeout as exc:
        state.store_log.failed(exc)
        result["store"] = {"ok": False, "detail": f"no answer within {PROBE_TIMEOUT_S:g} s"}
    except Exception as exc:
        state.store_log.failed(exc)
        result["store"] = {"ok": False, "detail": "not writable (see the server log)"}
    from halguru.models.registry import get_model

    for model, label in model_names(state, named).items():
        name = f"model:{label}"
        try:
            obj = get_model(model)
            path = getattr(obj, "path", None)
            missing = path is not None and not path.is_file()
            if missing:
                log.error("model file missing", extra={"fields": {"model": model, "path": str(path)}})
            entry = {"ok": not missing, "detail": "model file missing (see the server log)" if missing
                     else "ready", "queued": state.gate.depth(model)}
        except Exception:
            log.exception("model %s not available", model)
            entry = {"ok": False, "detail": "not available (see the server log)", "queued": state.gate.depth(model)}
        earlier = result.get(name)  # another model file of the same name (model.gguf in two folders): one entry,
        if earlier is not None:     # ready only when both are
            entry = {"ok": earlier["ok"] and entry["ok"], "detail": entry["detail"] if earlier["ok"]
                     else earlier["detail"], "queued": earlier["queued"] + entry["queued"]}
        result[name] = entry
    result["server"] = {"ok": not state.draining, "detail": "draining: shutting down" if state.draining
                        else "accepting"}
    task = state.worker_task
    if task is not None and task.done() and not state.draining:
        result["worker"] = {"ok": False, "detail": "the in-process worker stopped (see the server log)"}
    return result


def health(state: ServerState, named: bool = False) -> dict[str, dict[str, Any]]:
    """Readiness plus what has gone wrong lately: server errors (5 minutes), runs stuck past their timeout,
    and the queues' depth against their bound. ``named``: as ``components``, and failing inboxes by name."""
    parts = components(state, named)
    errors = state.metrics.server_errors()
    parts["errors"] = {"ok": errors == 0, "detail": f"{errors} server errors (5xx) in the last 5 minutes"}
    if parts["store"]["ok"]:
        parts["runs"] = _runs(state)
        parts["jobs"] = _jobs(state)
    else:  # each read would wait out the store's timeout again
        parts["runs"] = parts["jobs"] = {"ok": False, "detail": "unknown: the store does not answer"}
    if state.settings.worker:  # the fetching channels run in this process's worker
        sources = _sources(state, named)
        if sources is not None:
            parts["channels"] = sources
    depth = sum(state.gate.depth(m) for m in {s.model for s in state.agents.values()})
    full = depth >= state.settings.queue_size
    parts["queue"] = {"ok": not full, "detail": f"{depth} runs waiting (each model queues at most "
                                                f"{state.settings.queue_size})", "queued": depth}
    return parts


def _sources(state: ServerState, named: bool) -> dict[str, Any] | None:
    """The fetching channels (email inboxes): all connected, or which are not (named to a caller who may read
    metrics; to others, how many: an agent's name and its mail server are not public)."""
    from halguru.channels.base import source_statuses

    sources = source_statuses(state.channels)
    if not sources:
        return None
    failing = [(agent, name, status) for agent, name, status in sources if status is not None and not status.ok]
    if not failing:
        return {"ok": True, "detail": f"{len(sources)} fetching channel(s) connected or connecting"}
    if named:
        return {"ok": False, "detail": "; ".join(f"{agent}/{name}: {status.detail}" for agent, name, status in failing)}
    return {"ok": False, "detail": f"{len(failing)} of {len(sources)} fetching channels cannot connect "
                                   "(see the server log)"}


def _runs(state: ServerState) -> dict[str, Any]:
    """No run is still 'running' well past its agent's timeout."""
    now = time.time()
    try:
        running = within(PROBE_TIMEOUT_S, lambda: state.store.list_runs(limit=1000, status="running"))
    except Exception:
        log.exception("listing running runs failed")
        return {"ok": False, "detail": "cannot list runs (see the server log)"}
    stuck = sum(1 for r in running if now - r["started"] > _timeout(state, r["agent"]) + STUCK_GRACE_S)
    return {"ok": stuck == 0, "detail": f"{len(running)} running, {stuck} stuck past their timeout"}


def _jobs(state: ServerState) -> dict[str, Any]:
    """The worker keeps up: no runnable job has waited JOB_LATE_S (none would, with no worker running)."""
    try:
        stats = within(PROBE_TIMEOUT_S, state.store.job_stats)
    except Exception:
        log.exception("job stats failed")
        return {"ok": False, "detail": "cannot count jobs (see the server log)"}
    late = stats["oldest_queued_s"]
    worker = "in-process worker" if state.settings.worker else "no worker here (--no-worker)"
    return {"ok": late < JOB_LATE_S, "detail": f"{int(stats['queued'])} queued, {int(stats['running'])} running, "
            f"{int(stats['dead'])} dead; the oldest due job has waited {late:.0f} s; {worker}"}


def _caller(request: Request, state: ServerState) -> Principal:
    """Who is calling, looked up within the probes' time: in an outage a key or session cannot be checked, and
    waiting for the store's pool (10 s) would spend a scrape's whole timeout to end in a 503; the caller gets
    what anyone without a key gets. A key the store refuses is still refused (401)."""
    try:
        return within(PROBE_TIMEOUT_S, lambda: resolve(request))
    except (ProbeTimeout, StoreUnavailable):  # the store check that follows says (and logs) that it is down
        return Principal(None, client_address(request, state.settings.trusted_proxies))


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={401: {"description": "the key sent is not valid"}, 503: {"description": "not ready"}})
def readyz(request: Request, state: State) -> JSONResponse:
    """Ready: models resolvable and their files present, the store writable, not draining after SIGTERM."""
    with one_look():
        parts = components(state, reads_metrics(_caller(request, state)))
    ok = all(p["ok"] for p in parts.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "components": parts}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={401: {"description": "the key sent is not valid"}})
def metrics(request: Request, state: State) -> Response:
    """Prometheus text format. Without a key, the samples of key-only agents are left out (their names are
    not public) and a model only they use is ``private-N``, as on /status; a key that may read metrics
    (Prometheus: `authorization: {credentials: KEY}`) sees those of the agents it may use."""
    with one_look():  # a plain function runs on a thread: the key's lookup blocks no other request
        caller = _caller(request, state)
        shown = [name for name, served in state.agents.items() if _labels_shown(caller, served)]
        text = state.metrics.render(shown, _metric_models(state, caller))
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def _labels_shown(caller: Principal, served: ServedAgent) -> bool:
    """Whether ``/metrics`` shows this caller the samples labelled with ``served``'s name: a public agent's to
    anyone; another's to a caller that may read metrics and use it (a session still owing its second factor
    is nobody yet)."""
    return served.web_chat == "public" or (reads_metrics(caller) and caller.allows(served))


def reads_metrics(caller: Principal) -> bool:
    """A caller who may read metrics (a session still owing its second factor is nobody yet)."""
    return (caller.web is None or bool(caller.web["mfa_done"])) and caller.can("metrics:read")


@router.get("/status", response_class=HTMLResponse, responses={503: {"description": "something is wrong"}})
def status_page(request: Request, state: State) -> Response:
    """For people (HTML) or monitors (JSON with ``Accept: application/json``): each component, recent server
    errors, stuck runs, queue depth; 503 when any is bad."""
    with one_look():
        parts = health(state, reads_metrics(_caller(request, state)))
    ok = all(p["ok"] for p in parts.values())
    code = 200 if ok else 503
    public = [(n, s) for n, s in state.agents.items() if s.web_chat == "public"]
    uptime = int(time.time() - state.started)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"status": "ok" if ok else "degraded", "uptime_s": uptime, "components": parts,
                             "public_agents": [n for n, _ in public],
                             "other_agents": len(state.agents) - len(public)}, status_code=code)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class={'ok' if p['ok'] else 'bad'}>{'ok' if p['ok'] else 'bad'}"
        f"</td><td>{html.escape(str(p['detail']))}</td></tr>" for name, p in parts.items())
    agents = "".join(f"<li><a href=\"/chat/\">{html.escape(n)}</a></li>" for n, _ in public)
    others = len(state.agents) - len(public)
    banner = "<p class=ok>All good.</p>" if ok else "<p class=bad><strong>Degraded</strong>: see below.</p>"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>halguru status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}td,th{{padding:.3rem .8rem;text-align:left}}
.ok{{color:#070}}.bad{{color:#b00}}</style></head><body><h1>halguru status</h1>{banner}
<p>Up {uptime} s{' · dev mode (no API keys)' if state.settings.dev else ''}.</p>
<table><tr><th>component</th><th>state</th><th>detail</th></tr>{rows}</table>
<h2>Public agents</h2><ul>{agents or '<li>none</li>'}</ul>
{f'<p>{others} more agent(s) need an API key.</p>' if others else ''}
<p><a href="/swagger">API docs</a> · <a href="/chat/">web chat</a> · <a href="/metrics">metrics</a></p>
</body></html>"""
    return HTMLResponse(page, status_code=code)


# HEAD, which load balancers and uptime checks send: the same answer without its body (uvicorn drops it), left out
# of the API's docs, where a second operation per path would repeat its operationId
for _path, _endpoint in (("/healthz", healthz), ("/readyz", readyz), ("/status", status_page)):
    router.add_api_route(_path, _endpoint, methods=["HEAD"], include_in_schema=False)
