"""Cron schedules (``schedules:`` in agent.yaml): each due time queues one ``run`` job.

The next due time of each schedule lives in the store, so every worker sharing it agrees: moving it from one
due time to the next and queuing the job are one transaction that only one worker wins. After downtime a
schedule is late by more than ``GRACE``: with ``missed: once`` (the default) it runs once, however many times
it was missed; with ``missed: skip`` it waits for its next time. A due time whose schedule's earlier run still
waits in the queue queues nothing either: that run is the catch-up. Times are computed in the schedule's time zone
(croniter on zone-aware datetimes), so "9:00 Europe/Paris" stays 9:00 across daylight saving changes, and a
fixed hour runs once when the clocks go back (``next_after``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from halguru.agents.loader import Agent
from halguru.agents.spec import Schedule
from halguru.errors import StoreUnavailable
from halguru.store.base import Store

log = logging.getLogger("halguru.worker")

GRACE = 60.0
"""A due time passed by at most this many seconds is on time (a busy or briefly stopped worker), not missed."""
MAX_SLEEP = 30.0  # re-read the store at least this often (another worker may have moved a schedule)


def next_after(schedule: Schedule, now: float, last: float | None = None) -> float:
    """The first time strictly after ``now`` that the cron expression names, in the schedule's zone.

    As crontab does across daylight saving changes: when the clocks go back, a schedule with a fixed hour runs
    once in the repeated hour (a local time already passed, at ``now`` or at the ``last`` run, is not run
    again), one whose hour is a wildcard (``*``, ``*/2``, @hourly) runs by elapsed time, in both passes; when
    they go forward, a time that does not exist (2:30 in a skipped hour) runs once, at the first time after it
    (3:00)."""
    from croniter import croniter

    zone = ZoneInfo(schedule.timezone)

    def wall(moment: datetime) -> datetime:  # the local clock's reading: compares across a repeated hour's passes
        return moment.replace(tzinfo=None)

    start = datetime.fromtimestamp(now, zone)
    passed = max(wall(start), wall(datetime.fromtimestamp(now if last is None else last, zone)))
    times = croniter(schedule.cron, start)
    while True:
        upcoming = times.get_next(datetime)
        if _hour_is_wildcard(schedule.cron) or wall(upcoming) > passed:
            return float(upcoming.timestamp())


def _hour_is_wildcard(cron: str) -> bool:
    fields = cron.split()
    return fields == ["@hourly"] or (len(fields) == 5 and fields[1].startswith("*"))


def schedule_id(agent: str, schedule: Schedule) -> str:
    """Stable while the schedule is unchanged: editing its cron or zone starts it afresh."""
    digest = hashlib.sha256(f"{schedule.cron}|{schedule.timezone}".encode()).hexdigest()[:10]
    return f"{agent}:{schedule.name}:{digest}"


class Scheduler:
    def __init__(self, store: Store, agents: Mapping[str, Agent]):
        self.store = store
        self.agents = agents  # read at each tick: a version published or rolled back meanwhile counts from then
        self.next_due: float | None = None
        self._failing: set[str] = set()  # schedules whose failure was logged: once each, not every tick

    def entries(self) -> list[tuple[str, str, Schedule]]:
        """(schedule id, agent, schedule) of every schedule of the agents served now."""
        return [(schedule_id(name, s), name, s) for name, agent in list(self.agents.items())
                for s in agent.spec.schedules]

    def tick(self, now: float) -> int:
        """Queue the runs that are due at ``now``; how many were queued. A schedule that fails (a cron with no
        next time) is logged once and skipped: the others run; a store outage raises."""
        queued, soonest = 0, None
        for sid, agent, schedule in self.entries():
            try:
                fired, upcoming = self._fire(sid, agent, schedule, now)
            except StoreUnavailable:
                raise
            except Exception as exc:
                if sid not in self._failing:
                    self._failing.add(sid)
                    log.error("schedule %s of agent %s cannot run: %s; skipped (the other schedules run)",
                              schedule.name, agent, str(exc) or type(exc).__name__,
                              extra={"fields": {"agent": agent, "schedule": schedule.name, "cron": schedule.cron}})
                continue
            self._failing.discard(sid)
            queued += fired
            soonest = upcoming if soonest is None else min(soonest, upcoming)
        self.next_due = soonest
        return queued

    def _fire(self, sid: str, agent: str, schedule: Schedule, now: float) -> tuple[bool, float]:
        """Queue the schedule's run if it is due (whether this worker queued it) and its next due time."""
        due = self.store.schedule_next(sid)
        if due is None:  # first seen: its first run is its next time, not now
            upcoming = next_after(schedule, now)
            self.store.fire_schedule(sid, None, upcoming, None)
            return False, upcoming
        if due > now:
            return False, due
        upcoming = next_after(schedule, now, last=due)
        on_time = now - due <= GRACE
        if self._waiting(sid, agent, schedule, due):
            self.store.fire_schedule(sid, due, upcoming, None)  # moved on; nothing queued
            return False, upcoming
        job = None if schedule.missed == "skip" and not on_time else {
            "kind": "run", "agent": agent, "idempotency_key": f"schedule:{sid}:{due:.0f}",
            "payload": {"input": schedule.input, "title": f"schedule {schedule.name}",
                        "schedule": schedule.name, "due": due, "late_s": round(now - due, 3)}}
        return self.store.fire_schedule(sid, due, upcoming, job) and job is not None, upcoming

    def _waiting(self, sid: str, agent: str, schedule: Schedule, due: float) -> bool:
        """Whether the schedule's run of an earlier due time still waits in the queue (a busy worker, its model
        down): a run every 5 minutes behind an hour's backlog queued 12 copies that then ran back to back. That
        one run covers this due time too, as a catch-up after downtime does."""
        waiting = self.store.waiting_job(f"schedule:{sid}:")
        if waiting is not None:
            log.info("schedule run not queued: its earlier run still waits", extra={"fields": {
                "agent": agent, "schedule": schedule.name, "due": due, "waiting_job": waiting["id"]}})
        return waiting is not None

    def sleep_for(self, now: float) -> float:
        """Seconds until the next tick is worth doing."""
        if self.next_due is None:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(0.05, self.next_due - now))
