"""Process verification (``/admin/approvals``, ``runs:approve_all``): tool calls waiting for a human
(approve, with the arguments edited or not, or reject with a reason, as `halguru runs approve|reject` does)
and team or workflow runs that stopped short (interrupted, failed, limited, cancelled) to resume from their last
checkpoint.

A decision goes through ``halguru_server.runs`` (the checks and the library's ``approvals.resume_events`` /
``durable.resume_events`` of ``POST /v1/runs/{id}/approve|reject|resume``): the continuation runs to its end,
then the page comes back saying how it ended. The library records the decision (``run.approve``,
``run.reject``, ``run.resume``) and the approved side-effect call (``tool.call``) in the audit log.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from halguru.orchestration.durable import RESUMABLE
from halguru_server import api as rest_api
from halguru_server import runs
from halguru_server.console import shell
from halguru_server.errors import ApiError
from halguru_server.identity import pages
from halguru_server.identity.guards import require
from halguru_server.schemas import RunOut
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Approver = Annotated[Principal, Depends(require("runs:approve_all"))]
State = Annotated[ServerState, Depends(state_of)]
RunId = Annotated[str, Path(max_length=50)]


def _pending(state: ServerState, caller: Principal) -> list[dict[str, Any]]:
    """The pending calls, each with its arguments as the form shows them (indented JSON)."""
    return [{**row, "arguments_json": json.dumps(row["arguments"], indent=2, ensure_ascii=False)}
            for row in runs.list_pending(state, caller)]


@router.get("/approvals")
def approvals_page(request: Request, state: State, caller: Approver,
                   notice: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    """Waiting tool calls (oldest first) and team or workflow runs that stopped short (newest first)."""
    interrupted = sorted((r for status in RESUMABLE for r in runs.list_runs(state, caller, status, 50) if r["kind"]),
                         key=lambda r: r["started"], reverse=True)
    return shell.render(request, caller, "approvals.html", "Approvals", pending=_pending(state, caller),
                        interrupted=interrupted, notice=notice)


def _edited(text: str, original: dict[str, Any] | None) -> dict[str, Any] | None:
    """The form's arguments: None when unchanged (a plain approve), else the edited object (422 if not one)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ApiError(422, f"the arguments are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, "the arguments must be a JSON object")
    return None if value == original else value


async def _decide(request: Request, state: ServerState, caller: Principal, run_id: str,
                  decision: str, form: dict[str, str]) -> RunOut:
    """Approve (with edited arguments), reject or resume, and run the continuation to its end."""
    if decision == "resume":
        started = await runs.resume(state, caller, run_id, rest_api._request_id(request))
    elif decision == "reject":
        started = await runs.decide(state, caller, run_id, rest_api._request_id(request),
                                    reject=form.get("reason", ""))
    else:
        pending = await asyncio.to_thread(runs.list_pending, state, caller)  # store reads: off the event loop
        original = next((r["arguments"] for r in pending if r["run_id"] == run_id), None)
        edit = _edited(form.get("arguments", "{}"), original) if "arguments" in form else None
        started = await runs.decide(state, caller, run_id, rest_api._request_id(request), edit)
    answer = await rest_api.respond(request, state, *started, stream=False)
    assert isinstance(answer, RunOut)
    return answer


@router.post("/approvals/{run_id}/{decision}")
async def decide_page(run_id: RunId, decision: Literal["approve", "reject", "resume"], request: Request,
                      state: State, caller: Approver) -> Response:
    """A decision from the page's forms; back to the page saying how the continuation ended."""
    form = await pages.form(request)
    try:
        answer = await _decide(request, state, caller, run_id, decision, form)
    except ApiError as exc:
        said = f"{run_id}: {exc.message}"
    else:
        done = {"approve": "approved", "reject": "rejected", "resume": "resumed"}[decision]
        said = f"{run_id} {done}: continued as {answer.run_id}, which ended {answer.status}" + (
            f": {answer.output[:120]}" if answer.output else "")
    return shell.back(f"/admin/approvals?{urlencode({'notice': said})}", caller)
