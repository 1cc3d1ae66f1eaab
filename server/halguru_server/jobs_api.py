"""/v1/jobs: queue an agent run for the worker, list, show, retry and cancel jobs.

Jobs are scoped like conversations: a key sees the jobs it queued, for agents it may use; an admin key (and
--dev) sees every job, including those channels and schedules queued.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from halguru.errors import TooManyJobs
from halguru.jobs.handlers import RUN, run_queue_key
from halguru_server import audit, cursors, service
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.schemas import UserMessage
from halguru_server.state import Principal, ServerState, agent_for, state_of

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(401, 422), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("jobs:read"))]  # own jobs (everyone's: jobs:read_all)
Writer = Annotated[Principal, Depends(require("jobs:write"))]
State = Annotated[ServerState, Depends(state_of)]
JobId = Annotated[str, Path(max_length=60, description="a job id")]
_JOB_ID = re.compile(r"^job_[0-9a-f]{6,40}$")
JobStatus = Literal["queued", "running", "done", "dead", "cancelled"]
# A 429 too_many_jobs clears as the worker runs the owner's jobs, not in a second: Retry-After, as every 429 has,
# says to wait about one job's run (the clients' default longest wait), so a batch that fills the cap backs off.
TOO_MANY_RETRY_AFTER_S = 30
JOB_RUNS = 50  # the runs of a job shown with it (one per attempt, and continuations: a handful)


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=200)
    input: UserMessage = Field(description="the message the run gets (not only whitespace)")
    conversation_id: str | None = Field(default=None, max_length=100,
                                        description="continue this conversation (default: a new one)")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200, description="queuing the "
                                        "same job again under its key returns the first job instead of a second "
                                        "one (another job under the same key: 422)")
    delay: float = Field(default=0.0, ge=0, le=30 * 86400, description="seconds before it may start")


class JobOut(BaseModel):
    id: str
    kind: str
    agent: str
    status: str = Field(description="queued, running, done, dead (retries used up) or cancelled")
    attempts: int
    max_attempts: int
    created: float
    run_after: float
    started: float | None
    finished: float | None
    last_error: str | None
    lease_expires: float | None = Field(description="a running job's lease: when it is past, the job's worker "
                                        "stopped (or was killed) and the next worker to look takes the job over")
    result: dict[str, Any] | None = Field(description="done jobs: run_id, status, conversation_id, ...")
    payload: dict[str, Any]


class JobRun(BaseModel):
    id: str
    status: str = Field(description="as a run's status reads (GET /v1/runs/{id})")
    started: float


class JobDetail(JobOut):
    runs: list[JobRun] = Field(description="the runs this job started, newest first: each attempt's, and the "
                               "continuation of a run it resumed from its checkpoint")


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str | None = Field(default=None, min_length=1, max_length=200, description="only this agent's jobs "
                              "(required to cancel)")


class BulkOut(BaseModel):
    count: int = Field(description="how many jobs were queued again (retry) or cancelled")


class RetriedOut(BulkOut):
    left: int = Field(description="how many dead jobs stay dead, their owners holding max_waiting_jobs queued "
                                  "(call again once some have run)")


def _owned(state: ServerState, caller: Principal, job_id: str) -> dict[str, Any]:
    job = state.store.get_job(job_id) if _JOB_ID.match(job_id) else None
    if job is None or not _may_use(state, caller, job["agent"]) or not caller.owns(job["owner"], "jobs"):
        raise ApiError(404, f"no job {job_id!r}")
    return dict(job)


def _may_use(state: ServerState, caller: Principal, agent: str) -> bool:
    """Whether ``caller`` reaches ``agent``'s jobs: a served agent it may use, or by name one no longer served
    (its queued jobs wait for no worker, yet count in ``max_waiting_jobs``: their owner must find and cancel them)."""
    served = state.agents.get(agent)
    if served is not None:
        return caller.allows(served)
    names = caller.agent_names
    return names is None or agent in names


def _listed_agents(state: ServerState, caller: Principal, agent: str | None) -> list[str] | None:
    """The agents a listing of ``caller``'s jobs covers (None: any, those no longer served too)."""
    if agent is not None:
        return [agent] if _may_use(state, caller, agent) else []
    names = caller.agent_names
    if names is None:
        return None
    return [n for n in set(names) | set(state.agents) if _may_use(state, caller, n)]


def _out(job: dict[str, Any]) -> JobOut:
    return JobOut(**{k: job[k] for k in JobOut.model_fields})


def _too_many(exc: TooManyJobs) -> ApiError:
    return ApiError(429, str(exc), "too_many_jobs", headers={"Retry-After": str(TOO_MANY_RETRY_AFTER_S)})


@router.post("/jobs", response_model=JobOut, status_code=202, responses=responses(400, 403, 404, 409, 413, 429))
def create_job(body: JobIn, state: State, caller: Writer) -> JobOut:
    """Queue a run of an agent for the worker; poll ``GET /v1/jobs/{id}`` for its result."""
    agent_for(state, caller, body.agent)
    service.check_input(state, body.input)
    if body.conversation_id is not None:
        conversation = service.get_conversation(state, caller, body.conversation_id)
        if conversation["agent"] != body.agent:
            raise ApiError(400, f"conversation {body.conversation_id} belongs to agent {conversation['agent']!r}")
        service.check_room(state, caller, body.conversation_id, len(body.input))  # 409 as the messages route
    elif state.settings.max_conversations and caller.owner is not None:  # its run starts one: 409 as POST ..
        service.check_owned(state, caller.owner)
    key = f"api:{caller.owner}:{body.idempotency_key}" if body.idempotency_key else None
    payload = {"input": body.input, "conversation_id": body.conversation_id}
    try:
        job, new = state.store.enqueue_job(RUN, body.agent, payload, queue_key=run_queue_key(body.conversation_id),
                                           idempotency_key=key, owner=caller.owner, delay=body.delay,
                                           max_waiting=state.settings.max_waiting_jobs)
    except TooManyJobs as exc:  # a flood of jobs would slow every claim (and so every owner's jobs)
        raise _too_many(exc) from None
    if not new and (job["agent"], job["payload"]) != (body.agent, payload):  # as the messages endpoint does
        raise ApiError(422, "this idempotency_key was already used for another job; send a new key for a new job",
                       "idempotency_key_reused")
    if state.sink is not None:
        state.sink.on_enqueue()  # wakes the in-process worker
    return _out(dict(job))


@router.get("/jobs", response_model=JobPage, responses=responses(400))
def list_jobs(state: State, caller: Caller, agent: str | None = None,
              status: Annotated[JobStatus | None, Query(description="what the jobs' status is")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              cursor: Annotated[str | None, Query(max_length=200)] = None) -> JobPage:
    """Newest first; ``status`` and ``agent`` narrow the list; follow ``next_cursor`` for more (the jobs
    queued before the last one shown: jobs queued meanwhile shift nothing)."""
    before = cursors.job_before(cursor)
    names = _listed_agents(state, caller, agent)
    rows = state.store.list_jobs(limit + 1, status=status, agents=names, owner=caller.owner_filter_for("jobs"),
                                 before=before)
    more = len(rows) > limit
    return JobPage(data=[_out(dict(r)) for r in rows[:limit]],
                   next_cursor=cursors.job_cursor(rows[limit - 1]) if more else None)


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=responses(404))
def get_job(job_id: JobId, state: State, caller: Caller) -> JobDetail:
    """The job, with the runs it started (by the job id each run records)."""
    job = _owned(state, caller, job_id)
    runs = state.store.list_runs(JOB_RUNS, job_id=job["id"])
    return JobDetail(**_out(job).model_dump(),
                     runs=[JobRun(id=r["id"], status=r["status"], started=r["started"]) for r in runs])


@router.post("/jobs/{job_id}/retry", response_model=JobOut, responses=responses(404, 409, 429))
def retry_job(job_id: JobId, request: Request, state: State, caller: Writer) -> JobOut:
    """Queue a dead or cancelled job again (its attempts start over)."""
    job = _owned(state, caller, job_id)
    if job["agent"] not in state.agents:
        raise ApiError(409, f"agent {job['agent']!r} is no longer served here: its jobs can be cancelled, not retried")
    try:
        retried = state.store.retry_job(job_id, owner=job["owner"], max_waiting=state.settings.max_waiting_jobs)
    except TooManyJobs as exc:  # cancel and retry must not pass the cap POST /jobs keeps
        raise _too_many(exc) from None
    if not retried:
        raise ApiError(409, f"job {job_id} is {job['status']}; only dead or cancelled jobs can be retried")
    audit.record(request, "job.retry", job_id, {"kind": job["kind"], "agent": job["agent"]})
    return _out(_owned(state, caller, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=responses(404, 409))
async def cancel_job(job_id: JobId, request: Request, state: State, caller: Writer) -> JobOut:
    """Cancel a queued or running job (a running one stops within a third of its lease)."""
    job = _owned(state, caller, job_id)
    if not await asyncio.to_thread(state.store.cancel_job, job_id):
        raise ApiError(409, f"job {job_id} is {job['status']}; only queued or running jobs can be cancelled")
    await asyncio.to_thread(audit.record, request, "job.cancel", job_id, {"kind": job["kind"], "agent": job["agent"]})
    return _out(_owned(state, caller, job_id))


def _agents(state: ServerState, caller: Principal, agent: str | None) -> list[str]:
    """The agents a bulk action reaches: ``agent`` (403/404 unless the caller may use it), else every one it may."""
    if agent is not None:
        agent_for(state, caller, agent)
    return [n for n, s in state.agents.items() if caller.allows(s) and (agent is None or n == agent)]


@router.post("/jobs/retry", response_model=RetriedOut, responses=responses(403, 404))
def retry_dead_jobs(body: BulkIn, request: Request, state: State, caller: Writer) -> RetriedOut:
    """Queue every dead job again (with ``agent``: that agent's), oldest first, their attempts starting over: a
    key's own jobs, or everyone's for ``jobs:write_all``. Each owner's stop where they would pass
    ``max_waiting_jobs`` queued, an admin's retry of everyone's too (``left`` counts those still dead: call again
    once some have run); jobs of no owner (a channel's, a schedule's) are all queued."""
    owner = caller.owner_filter_for("jobs")
    count, left = state.store.retry_dead_jobs(_agents(state, caller, body.agent), owner=owner,
                                              max_waiting=state.settings.max_waiting_jobs)
    audit.record(request, "job.retry", body.agent or "*", {"agent": body.agent, "dead_jobs": count, "left": left})
    if count and state.sink is not None:
        state.sink.on_enqueue()  # wakes the in-process worker
    return RetriedOut(count=count, left=left)


@router.post("/jobs/cancel", response_model=BulkOut, responses=responses(403, 404))
def cancel_queued_jobs(body: BulkIn, request: Request, state: State, caller: Writer) -> BulkOut:
    """Cancel every queued job of ``agent`` (a flood to clear): a key's own, or everyone's for
    ``jobs:write_all``. Running jobs go on: cancel them one by one."""
    if body.agent is None:
        raise ApiError(422, "agent: name the agent whose queued jobs to cancel")
    owner = caller.owner_filter_for("jobs")
    gone = body.agent not in state.agents and _may_use(state, caller, body.agent) and \
        bool(state.store.list_jobs(1, status="queued", agent=body.agent, owner=owner))
    if not gone:  # a served agent, or a name of none the caller has jobs queued for (a typo): 404 for that
        _agents(state, caller, body.agent)
    count = state.store.cancel_queued_jobs(body.agent, owner=owner)
    audit.record(request, "job.cancel", body.agent, {"agent": body.agent, "queued_jobs": count})
    return BulkOut(count=count)
