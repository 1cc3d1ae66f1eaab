"""Jobs (``/admin/jobs``, ``jobs:read_all``): the worker's queue, newest first, filtered by status and agent,
paged by the job's place in the queue; a dead or cancelled job is queued again and a queued or running one
cancelled (``jobs:write_all``) through the routes ``POST /v1/jobs/{id}/retry|cancel`` and `halguru jobs
retry|cancel` answer with the same checks and the same audit entries; so are every dead job (of the agent shown)
and every queued job of the agent shown (``POST /v1/jobs/retry|cancel``, `halguru jobs retry --dead`, `jobs
cancel --agent`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from halguru.jobs import LEASE_LAPSED, lease_lapsed
from halguru_server import jobs_api
from halguru_server.console import shell
from halguru_server.errors import ApiError
from halguru_server.identity import pages
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Reader = Annotated[Principal, Depends(require("jobs:read_all"))]
Writer = Annotated[Principal, Depends(require("jobs:write_all"))]
State = Annotated[ServerState, Depends(state_of)]
PAGE = 50
STATUSES: tuple[str, ...] = get_args(jobs_api.JobStatus)


def _row(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the page shows it: what it answers (or why it failed, on one line), the action it takes and the
    conversation it answers in (a link: the job's id was all the page gave to find it by)."""
    payload = job["payload"]
    what = str(payload.get("input") or payload.get("text") or "")
    error = LEASE_LAPSED if lease_lapsed(job) else " ".join(str(job["last_error"] or "").split())
    action = "retry" if job["status"] in ("dead", "cancelled") else "cancel" if job["status"] in (
        "queued", "running") else None
    conversation = payload.get("conversation_id")  # a queued run's: the page that shows what it answered
    return {**job, "what": what, "error": error, "action": action,
            "conversation": conversation if isinstance(conversation, str) else None}


@router.get("/jobs")
def jobs_page(request: Request, state: State, caller: Reader,
              status: Annotated[str | None, Query(max_length=20)] = None,
              agent: Annotated[str | None, Query(max_length=200)] = None,
              cursor: Annotated[str | None, Query(max_length=200)] = None,
              notice: Annotated[str | None, Query(max_length=300)] = None,
              job: Annotated[str | None, Query(alias="id", max_length=60)] = None) -> HTMLResponse:
    """The queue, newest first (as `halguru jobs list`): status, tries, what each job answers or its error; ``id``:
    that one job (pasted from a log line or `halguru jobs list`: else a page of 50 at a time to look through)."""
    if status and status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    job = (job or "").strip() or None
    older, error = None, None
    if job is not None:
        try:
            rows = [jobs_api._out(jobs_api._owned(state, caller, job)).model_dump()]
        except ApiError as exc:
            rows, error = [], exc.message
    else:
        page = jobs_api.list_jobs(state, caller, agent=agent or None, status=status or None,  # type: ignore[arg-type]
                                  limit=PAGE, cursor=cursor)
        rows = [j.model_dump() for j in page.data]
        if page.next_cursor:
            older = "/admin/jobs?" + urlencode({k: v for k, v in (("status", status), ("agent", agent),
                                                                    ("cursor", page.next_cursor)) if v})
    shown = urlencode({k: v for k, v in (("id", job), ("status", status), ("agent", agent), ("cursor", cursor)) if v})
    here = f"/admin/jobs?{shown}" if shown else "/admin/jobs"  # where an action comes back to
    fields = [{"name": "status", "label": "Status", "value": status, "type": "select",
               "options": [("", "any"), *((s, s) for s in STATUSES)]},
              {"name": "agent", "label": "Agent", "value": agent},
              {"name": "id", "label": "Job id", "value": job, "type": "search"}]
    return shell.render(request, caller, "jobs.html", "Jobs", jobs=[_row(j) for j in rows], fields=fields,
                        older=older, here=here, notice=notice, error=error)


@router.post("/jobs/{action}")
async def jobs_bulk_page(action: Literal["retry-dead", "cancel-queued"], request: Request, state: State,
                         caller: Writer) -> Response:
    """Retry every dead job (of the filtered agent) or cancel every queued job of the filtered agent, as
    ``POST /v1/jobs/retry|cancel`` do; back to the page saying how many."""
    form = await pages.form(request)  # (the guard checked the form's CSRF token)
    body = jobs_api.BulkIn(agent=form.get("agent") or None)
    try:
        if action == "retry-dead":
            done = await asyncio.to_thread(jobs_api.retry_dead_jobs, body, request, state, caller)
            said = f"{done.count} dead job{'s' * (done.count != 1)} queued again" + (
                f"; {done.left} left dead: their owners have max_waiting_jobs queued (retry once some have run)"
                if done.left else "")
        else:
            count = (await asyncio.to_thread(jobs_api.cancel_queued_jobs, body, request, state, caller)).count
            said = f"{count} queued job{'s' * (count != 1)} of {body.agent} cancelled"
    except ApiError as exc:
        said = exc.message
    kept = [("agent", body.agent)] if body.agent else []
    return shell.back(f"/admin/jobs?{urlencode([*kept, ('notice', said[:300])])}", caller)


@router.post("/jobs/{job_id}/{action}")
async def job_action_page(job_id: Annotated[str, Path(max_length=60)], action: Literal["retry", "cancel"],
                          request: Request,
                          state: State, caller: Writer) -> Response:
    """Retry or cancel from the page's buttons; back to the page (its filters and place: the form's ``back``)
    saying what became of the job."""
    back = (await pages.form(request)).get("back", "")  # (the guard checked the form's CSRF token)
    if not (back == "/admin/jobs" or back.startswith("/admin/jobs?")):  # only this page, never another site
        back = "/admin/jobs"
    try:
        if action == "retry":
            job = await asyncio.to_thread(jobs_api.retry_job, job_id, request, state, caller)
        else:
            job = await jobs_api.cancel_job(job_id, request, state, caller)
    except ApiError as exc:
        said = f"{job_id}: {exc.message}"
    else:
        said = f"{job.id} is {job.status}" + (" (its worker stops it within a third of its lease)"
                                              if action == "cancel" and job.status == "cancelled" else "")
    query = parse_qsl(urlsplit(back).query)
    kept = [(k, v) for k, v in query if k in ("id", "status", "agent", "cursor")]  # a notice before is replaced
    # the page takes 300 characters
    return shell.back(f"/admin/jobs?{urlencode([*kept, ('notice', said[:300])])}", caller)
