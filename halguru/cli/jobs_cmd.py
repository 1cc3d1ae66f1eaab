"""`halguru jobs`: the worker's queue: list, show, retry and cancel jobs (the store's, whichever process runs
them)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import typer

from halguru import audit
from halguru.errors import HalguruError
from halguru.jobs import LEASE_LAPSED, lease_lapsed
from halguru.printable import printable

app = typer.Typer(help="Jobs for the worker (channel replies, schedules, queued runs): list, show, retry, "
                  "cancel.", no_args_is_help=True)
STATUSES = ("queued", "running", "done", "dead", "cancelled")
JOB_RUNS = 50  # the runs `show` lists (one per attempt, and continuations: a handful)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _find(job_id: str) -> dict[str, Any]:
    from halguru.store import open_store

    job = open_store().find_job(job_id)
    if job is None:
        raise HalguruError(f"no job {job_id!r} (or the prefix matches several); `halguru jobs list` shows them")
    return dict(job)


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="queued, running, done, dead or cancelled."),
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's jobs."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many (newest first)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List jobs, newest first."""
    from halguru.cli.table import print_table
    from halguru.store import open_store

    if status is not None and status not in STATUSES:
        raise HalguruError(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    rows = open_store().list_jobs(limit, status=status, agent=agent)
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo(f"No {status} jobs." if status else "No jobs yet.")
        return
    print_table(["ID", "KIND", "AGENT", "STATUS", "TRIES", "CREATED", "INPUT / ERROR"],
                [[j["id"], j["kind"], j["agent"], j["status"], f"{j['attempts']}/{j['max_attempts']}",
                  _when(j["created"]), _why(j) or str(j["payload"].get("input") or j["payload"].get("text") or "")]
                 for j in rows],
                flexible=["AGENT", "INPUT / ERROR"])


def _why(job: Mapping[str, Any]) -> str | None:
    """A dead job's error; a queued one's that failed or was put off: its error and when it is tried next (a
    reply waiting out a mail server's outage listed only its input, as if nothing were wrong)."""
    if job["status"] == "dead":
        return str(job["last_error"] or "") or None
    if job["status"] == "queued" and job["last_error"]:
        return f"{job['last_error']} (next try {_when(job['run_after'])})"
    if lease_lapsed(job):
        return f"{LEASE_LAPSED} (at {_when(job['lease_expires'])})"
    return None


def _idempotency_key(job: Mapping[str, Any]) -> str | None:
    """The key as its sender gave it: POST /v1/jobs stores it scoped as ``api:OWNER:KEY``, and OWNER is None
    (printed 'None') in `serve --dev`; the owner has a line of its own."""
    key, scope = job["idempotency_key"], f"api:{job['owner']}:"
    return f"{key.removeprefix(scope)} (POST /v1/jobs)" if key and key.startswith(scope) else key


@app.command()
def show(job_id: str = typer.Argument(..., help="A job id (or a unique prefix).")) -> None:
    """A job: status, attempts, payload, error, result and the runs it started."""
    from halguru.store import open_store

    job = _find(job_id)
    for key in ("id", "kind", "agent", "status", "attempts", "max_attempts", "queue_key", "idempotency_key",
                "owner"):
        value = _idempotency_key(job) if key == "idempotency_key" else job[key]
        typer.echo(f"{key:<16}{value if value is not None else '-'}")
    for key in ("created", "run_after", "started", "finished"):
        typer.echo(f"{key:<16}{_when(job[key])}")
    if job["last_error"]:
        typer.echo(printable(f"{'last_error':<16}{job['last_error']}"))  # a remote server's words
    typer.echo(printable("payload         " + json.dumps(job["payload"], ensure_ascii=False)))
    if job["result"] is not None:
        typer.echo("result          " + json.dumps(job["result"], ensure_ascii=False))
    runs = open_store().list_runs(JOB_RUNS, job_id=job["id"])  # by the job id each run records, newest first
    for n, run in enumerate(runs):
        typer.echo(f"{'runs' if n == 0 else '':<16}{run['id']}  {run['status']:<11}  {_when(run['started'])}")
    if not runs:
        typer.echo(f"{'runs':<16}-")


@app.command()
def retry(
    job_id: str | None = typer.Argument(None, help="A dead or cancelled job's id (or a unique prefix)."),
    dead: bool = typer.Option(False, "--dead", help="Instead: every dead job (with --agent: of that agent)."),
    agent: str | None = typer.Option(None, "--agent", help="With --dead: only this agent's dead jobs."),
) -> None:
    """Queue a dead or cancelled job again, its attempts starting over; or with --dead every dead job (after an
    outage: a mail server or model that was down)."""
    from halguru.store import open_store

    if (job_id is None) == (not dead) or (agent is not None and not dead):
        raise HalguruError("give a job id (`halguru jobs list --status dead`), or --dead [--agent NAME] to retry "
                           "every dead job")
    if dead:
        count, _ = open_store().retry_dead_jobs([agent] if agent is not None else None)
        audit.record(open_store(), None, "job.retry", agent or "*", {"agent": agent, "dead_jobs": count})
        typer.echo(f"queued {count} dead job{'s' * (count != 1)} again"
                   + (f" of {printable(agent)}" if agent is not None else ""))
        return
    job = _find(job_id or "")
    if not open_store().retry_job(job["id"]):
        raise HalguruError(f"job {job['id']} is {job['status']}; only dead or cancelled jobs can be retried")
    audit.record(open_store(), None, "job.retry", job["id"], {"kind": job["kind"], "agent": job["agent"]})
    typer.echo(f"queued {job['id']} again")


@app.command()
def cancel(
    job_id: str | None = typer.Argument(None, help="A queued or running job's id (or a unique prefix)."),
    agent: str | None = typer.Option(None, "--agent", help="Instead: every queued job of this agent (a flood)."),
) -> None:
    """Cancel a queued or running job (a running one's worker stops it within a third of its lease), or with
    --agent every queued job of an agent."""
    from halguru.store import open_store

    if job_id is not None and agent is not None:
        raise HalguruError("give a job id or --agent NAME, not both")
    if job_id is None and agent is None:
        raise HalguruError("give a job id (`halguru jobs list`), or --agent NAME to cancel every queued job of "
                           "an agent")
    if agent is not None:
        count = open_store().cancel_queued_jobs(agent)
        audit.record(open_store(), None, "job.cancel", agent, {"agent": agent, "queued_jobs": count})
        typer.echo(f"cancelled {count} queued job{'s' * (count != 1)} of {printable(agent)}")
        return
    job = _find(job_id or "")
    if not open_store().cancel_job(job["id"]):
        raise HalguruError(f"job {job['id']} is {job['status']}; only queued or running jobs can be cancelled")
    audit.record(open_store(), None, "job.cancel", job["id"], {"kind": job["kind"], "agent": job["agent"]})
    typer.echo(f"cancelled {job['id']}")
