"""Cron schedules driven by an explicit clock: one job per due time, across workers, time zones and downtime; and
a real worker back from downtime; on both store backends."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from halguru.agents.loader import load_agent
from halguru.agents.spec import Schedule
from halguru.errors import AgentSpecError
from halguru.jobs.schedules import Scheduler
from halguru.store import Store
from tests.jobs.test_worker import run_until, worker_for

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def agent_with(tmp_path: Path, **schedule: object) -> object:
    folder = tmp_path / "digest"
    folder.mkdir(exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "digest", "model": "scripted", "schedules": [
        {"name": "morning", "cron": "0 9 * * *", "timezone": "Europe/Paris", "input": "morning digest",
         **schedule}]}))
    return load_agent(folder)


def ticked(scheduler: Scheduler, now: float) -> int:
    """``scheduler.tick(now)``, then its queued runs run (one still waiting would be the next due time's too)."""
    queued = scheduler.tick(now)
    while (job := scheduler.store.claim_job("w", lease=30)) is not None:
        scheduler.store.finish_job(job["id"], "w")
    return queued


def test_runs_at_its_local_time_once_per_day(store: Store, tmp_path: Path) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path)})
    assert ticked(scheduler, at("2026-03-27T08:00:00")) == 0  # first seen: nothing runs now
    assert scheduler.next_due == at("2026-03-27T09:00:00")
    assert ticked(scheduler, at("2026-03-27T08:59:59")) == 0
    assert ticked(scheduler, at("2026-03-27T09:00:01")) == 1
    assert ticked(scheduler, at("2026-03-27T09:00:30")) == 0  # the same due time never twice
    # across the change to summer time (29 March in Paris), 9:00 stays 9:00 local
    assert ticked(scheduler, at("2026-03-28T09:00:05")) == 1
    assert scheduler.next_due == at("2026-03-29T09:00:00")
    assert ticked(scheduler, at("2026-03-29T09:00:05")) == 1
    jobs = store.list_jobs(10)
    assert len(jobs) == 3 and {j["payload"]["input"] for j in jobs} == {"morning digest"}
    assert all(j["kind"] == "run" and j["agent"] == "digest" for j in jobs)


def test_two_workers_queue_one_job(store: Store, tmp_path: Path) -> None:
    agent = agent_with(tmp_path)
    first, second = Scheduler(store, {"digest": agent}), Scheduler(store, {"digest": agent})
    first.tick(at("2026-05-01T08:00:00"))
    second.tick(at("2026-05-01T08:00:00"))
    assert first.tick(at("2026-05-01T09:00:01")) + second.tick(at("2026-05-01T09:00:01")) == 1


def test_downtime_runs_once_not_once_per_missed_time(store: Store, tmp_path: Path) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path)})
    ticked(scheduler, at("2026-05-01T08:00:00"))
    assert ticked(scheduler, at("2026-05-05T12:00:00")) == 1  # four days down: one catch-up run
    job = store.list_jobs(1)[0]
    assert job["payload"]["late_s"] > 3 * 86400
    assert scheduler.next_due == at("2026-05-06T09:00:00")


def test_a_due_time_queues_nothing_while_the_schedules_earlier_run_still_waits(store: Store, tmp_path: Path) -> None:
    """Behind a busy worker (or a model down, its run waiting to be tried again) each due time queued one more
    copy: a run every 5 minutes behind an hour's backlog ran 12 times back to back. The run still waiting covers
    the later due times, as a catch-up after downtime does; once it is no longer waiting, the next one queues."""
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path)})
    scheduler.tick(at("2026-05-01T08:00:00"))
    assert scheduler.tick(at("2026-05-01T09:00:01")) == 1
    assert scheduler.tick(at("2026-05-02T09:00:01")) == 0  # the first still queued
    assert scheduler.next_due == at("2026-05-03T09:00:00")
    first = store.claim_job("w", lease=30)
    assert first is not None and store.fail_job(first["id"], "w", "model down", retry_in=600) == "queued"
    assert scheduler.tick(at("2026-05-03T09:00:01")) == 0  # waiting to be tried again: still the catch-up
    assert len(store.list_jobs(10)) == 1
    assert store.cancel_job(first["id"])  # done, dead or cancelled: no longer waiting
    assert scheduler.tick(at("2026-05-04T09:00:01")) == 1


async def test_a_worker_back_from_downtime_runs_the_missed_schedule_once(store: Store, tmp_path: Path) -> None:
    """The whole path on the real clock: a worker last saw the schedule three days ago; the one started now
    queues one catch-up run (not three) and runs the agent on the schedule's input."""
    agent = agent_with(tmp_path, cron="0 3 * * *", timezone="UTC")
    Scheduler(store, {"digest": agent}).tick(time.time() - 3 * 86400)  # the last worker, three days ago
    worker = worker_for(store, {"digest": agent})
    await run_until(worker, lambda: store.job_stats()["done"] >= 1)
    [job] = store.list_jobs(10)
    assert (job["kind"], job["status"], job["payload"]["schedule"]) == ("run", "done", "morning")
    assert job["payload"]["late_s"] > 2 * 86400 and "morning digest" in job["result"]["output"]
    assert worker.scheduler.next_due is not None and worker.scheduler.next_due > time.time()


def test_skip_policy_waits_for_the_next_time(store: Store, tmp_path: Path) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, missed="skip")})
    ticked(scheduler, at("2026-05-01T08:00:00"))
    assert ticked(scheduler, at("2026-05-05T12:00:00")) == 0
    assert ticked(scheduler, at("2026-05-06T09:00:20")) == 1  # on time (within the grace period)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cron", "61 * * * *", "invalid cron expression"),
    ("cron", "0 0 31 2 *", "schedule 'morning': cron '0 0 31 2 *' names no time in the next 5 years"),
    # a Quartz user's 9:00 (seconds first) would run every second of a minute: cron has five fields
    ("cron", "0 0 9 * * *", "cron '0 0 9 * * *' has 6 fields; it takes five: minute hour day month weekday"),
    ("cron", "* * * * * * 2030", "has 7 fields; it takes five"),
    ("cron", "0 9 * *", "has 4 fields; it takes five"),
    ("cron", "@reboot", "unknown cron shortcut '@reboot' (one of @yearly"),
    ("timezone", "Mars/Olympus", "unknown time zone"),
    ("input", " \n\t", "schedules.0.input: the input is blank"),
])
def test_bad_schedule_is_one_line(tmp_path: Path, field: str, value: str, message: str) -> None:
    with pytest.raises(AgentSpecError) as info:
        agent_with(tmp_path, **{field: value})
    assert message in str(info.value) and "agent.yaml" in str(info.value) and "\n" not in str(info.value)


def impossible(agent: Any) -> Any:
    """``agent`` with a second schedule whose cron names no date (31 February), as an agent validated before
    validation checked that gets it (a version published earlier)."""
    agent.spec.schedules.append(Schedule.model_construct(name="never", cron="0 0 31 2 *", timezone="UTC",
                                                         input="never", missed="once"))
    return agent


def test_a_schedule_that_never_comes_is_logged_once_and_the_others_run(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Scheduler(store, {"digest": impossible(agent_with(tmp_path))})
    with caplog.at_level(logging.ERROR, "halguru.worker"):
        assert ticked(scheduler, at("2026-05-01T08:00:00")) == 0
        assert ticked(scheduler, at("2026-05-01T09:00:01")) == 1  # the good schedule of the same agent runs
        assert ticked(scheduler, at("2026-05-02T09:00:01")) == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "schedule never of agent digest cannot run" in line and "skipped" in line
    assert [j["payload"]["schedule"] for j in store.list_jobs(10)] == ["morning", "morning"]


async def test_a_broken_schedule_holds_back_neither_retention_nor_the_worker(store: Store, tmp_path: Path) -> None:
    """The worker ticks retention after the schedules: a schedule that fails must not stop it."""
    from tests.jobs.test_worker import make_agent

    keeps = load_agent(make_agent(tmp_path, "short", metadata={"retention_days": 7}))
    worker = worker_for(store, {"digest": impossible(agent_with(tmp_path)), "short": keeps})
    await run_until(worker, lambda: any(j["kind"] == "retention" and j["status"] == "done"
                                        for j in store.list_jobs(10)), timeout=10)


@pytest.mark.parametrize(("cron", "first"), [("@daily", "2026-05-02T00:00:00"), ("@hourly", "2026-05-01T09:00:00"),
                                             ("@weekly", "2026-05-03T00:00:00")])
def test_cron_shortcuts_run_as_their_five_fields(store: Store, tmp_path: Path, cron: str, first: str) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, cron=cron)})
    ticked(scheduler, at("2026-05-01T08:30:00"))  # a Friday
    assert scheduler.next_due == at(first)


def offset(text: str) -> float:
    """A moment written with its UTC offset: which pass through a repeated hour."""
    return datetime.fromisoformat(text).timestamp()


def test_a_fixed_hour_runs_once_on_the_night_the_clocks_go_back(store: Store, tmp_path: Path) -> None:
    """25 October 2026 in Paris: 2:00-3:00 comes twice (+02:00, then +01:00); 2:30 runs in the first pass only."""
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, cron="30 2 * * *")})
    ticked(scheduler, at("2026-10-24T12:00:00"))
    assert scheduler.next_due == offset("2026-10-25T02:30:00+02:00")
    assert ticked(scheduler, offset("2026-10-25T02:30:01+02:00")) == 1
    assert scheduler.next_due == at("2026-10-26T02:30:00")
    assert ticked(scheduler, offset("2026-10-25T02:30:01+01:00")) == 0  # the repeated 2:30
    assert ticked(scheduler, at("2026-10-26T02:30:01")) == 1
    assert len(store.list_jobs(10)) == 2


def test_a_run_caught_up_in_the_repeated_hour_is_not_run_again_in_it(store: Store, tmp_path: Path) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, cron="30 2 * * *")})
    ticked(scheduler, at("2026-10-24T12:00:00"))
    assert ticked(scheduler, offset("2026-10-25T02:10:00+01:00")) == 1  # down over the first pass's 2:30
    assert scheduler.next_due == at("2026-10-26T02:30:00")


def test_a_wildcard_hour_runs_by_elapsed_time_in_both_passes(store: Store, tmp_path: Path) -> None:
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, cron="0 * * * *")})
    ticked(scheduler, at("2026-10-25T01:30:00"))
    assert ticked(scheduler, offset("2026-10-25T02:00:01+02:00")) == 1
    assert scheduler.next_due == offset("2026-10-25T02:00:00+01:00")  # an hour later
    assert ticked(scheduler, offset("2026-10-25T02:00:01+01:00")) == 1
    assert scheduler.next_due == offset("2026-10-25T03:00:00+01:00")


def test_a_time_the_clocks_skip_runs_once_at_the_next_valid_time(store: Store, tmp_path: Path) -> None:
    """29 March 2026 in Paris: 2:00 becomes 3:00, so 2:30 does not exist; that day's run is at 3:00."""
    scheduler = Scheduler(store, {"digest": agent_with(tmp_path, cron="30 2 * * *")})
    ticked(scheduler, at("2026-03-28T12:00:00"))
    assert scheduler.next_due == at("2026-03-29T03:00:00")
    assert ticked(scheduler, at("2026-03-29T03:00:01")) == 1
    assert scheduler.next_due == at("2026-03-30T02:30:00")
    assert ticked(scheduler, at("2026-03-30T02:30:01")) == 1
    assert len(store.list_jobs(10)) == 2
