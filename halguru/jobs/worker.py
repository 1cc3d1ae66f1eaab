"""The worker: claims jobs from the store, runs them under a renewed lease, retries failures with backoff.

``halguru serve`` runs one in-process (woken at once when its own API queues a job); ``halguru worker``
runs one alone; any number share a store. Idle workers sleep until the next job is due, at most ``poll``
seconds (SQLite has no notifications: another process's job is seen within ``poll``). The same worker runs
the agents' schedules and the channels that fetch their messages (``source``), as they are now: an agent
added or replaced while it runs (a published version) is taken up at once (``agents_changed``).

A job whose holder dies (SIGKILL, a lost host) is claimed again once its lease expires; a lease renewal
that fails (the job was cancelled, or taken over) cancels the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from halguru.agents import telemetry
from halguru.agents.runtime import SHUTDOWN
from halguru.channels.base import ChannelError, SourceChannel
from halguru.errors import StoreUnavailable
from halguru.jobs.handlers import HANDLERS, JobContext, JobError, JobPostponed
from halguru.jobs.pipeline import StoreSink
from halguru.jobs.retention import Retention
from halguru.jobs.schedules import Scheduler
from halguru.store.records import JobRecord, fair_key

log = logging.getLogger("halguru.worker")
STORE_BACKOFF_MAX_S = 30.0  # the longest wait between tries while the store is unavailable


@dataclass
class WorkerSettings:
    concurrency: int = 2  # jobs at once (model calls still queue for the model)
    lease: float = 30.0  # seconds a claim lasts without renewal
    poll: float = 0.5  # longest idle sleep: how soon another process's job is seen
    backoff: float = 2.0  # first retry after this many seconds, doubling, at most max_backoff
    max_backoff: float = 300.0
    # a reply the channel could not deliver (its provider or mail server down), a run whose model could not be
    # reached: outages outlast a run's hiccup, so their retries wait longer (30 s doubling to an hour:
    # REPLY_ATTEMPTS tries span about an hour, a run job's 5 about 7 minutes)
    delivery_backoff: float = 30.0
    delivery_max_backoff: float = 3600.0
    shutdown_timeout: float = 30.0  # running jobs get this long to finish on stop; then they are released
    max_input_chars: int | None = None  # a channel's message longer than this is cut (serve's max_input_chars)
    max_conversation_chars: int = 0  # serve's cap on a conversation (JobContext's; 0: none)


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with ±20 % jitter, so retries of a burst do not come back together."""
    return min(cap, base * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Worker:
    def __init__(self, ctx: JobContext, settings: WorkerSettings | None = None,
                 observe: Callable[[str, JobRecord, float], None] | None = None,
                 finished: Callable[[JobRecord, dict[str, Any]], None] | None = None):
        self.ctx = ctx
        self.settings = settings or WorkerSettings()
        self.holder = f"worker-{uuid.uuid4().hex[:12]}"
        self.observe = observe or (lambda outcome, job, seconds: None)  # metrics: outcome, job, duration
        self.finished = finished  # a job done and recorded, with its result (serve mode: notifications); quick
        self.sink = StoreSink(ctx.store, self.wake, self.settings.max_input_chars)
        self.scheduler = Scheduler(ctx.store, ctx.agents)
        self.retention = Retention(ctx.store, ctx.agents)  # agents' metadata.retention_days
        self._poke = threading.Event()  # set by wake(), a finished job, stop(): the idle wait returns
        self._running: dict[str, asyncio.Task[None]] = {}
        # (agent, channel) -> the fetching channel and its task; replaced when the agent's channels are
        self._sources: dict[tuple[str, str], tuple[SourceChannel, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()  # agents_changed(): the schedule loop looks again now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._served: deque[str] = deque(maxlen=max(2, self.settings.concurrency))  # fair_keys served last
        self._stopping = False

    def wake(self) -> None:
        """A job was queued in this process (any thread): look now instead of at the next poll."""
        self._poke.set()

    def agents_changed(self) -> None:
        """An agent was added or replaced (a version published or rolled back; from any thread): its schedules
        and fetching channels are taken up now, not at the schedule loop's next turn."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the worker has stopped
                loop.call_soon_threadsafe(self._changed.set)

    async def run(self) -> None:
        """Work until cancelled or ``stop()``; running jobs then get ``shutdown_timeout`` to finish."""
        self._loop = asyncio.get_running_loop()
        helpers = [asyncio.create_task(self._schedules(), name="schedules")]
        failures = 0  # store calls failed in a row: a database outage is waited out, not the worker's end
        try:
            while not self._stopping:
                self._poke.clear()  # before looking: a job queued from here on wakes the wait below
                try:
                    if len(self._running) < self.settings.concurrency and await self._claim_one():
                        failures = 0
                        continue
                    await self._idle()
                except Exception as exc:
                    failures += 1
                    self._looking_failed(exc, failures)
                    await asyncio.to_thread(self._poke.wait, retry_delay(failures, 1.0, STORE_BACKOFF_MAX_S))
                    continue
                if failures:
                    log.info("store reachable again; claiming jobs", extra={"fields": {"holder": self.holder}})
                failures = 0
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._end_sources(list(self._sources))
            await self._drain()

    def _looking_failed(self, exc: Exception, failures: int) -> None:
        """Log a failed claim or wait: an outage once as it starts (and every tenth try), a bug with its
        traceback."""
        fields = {"holder": self.holder, "error": str(exc) or type(exc).__name__, "failures": failures}
        if isinstance(exc, StoreUnavailable):
            if failures == 1 or failures % 10 == 0:
                log.warning("store unavailable; retrying", extra={"fields": fields})
        else:
            log.exception("looking for jobs failed; retrying", extra={"fields": fields})

    def stop(self) -> None:
        self._stopping = True
        self._poke.set()

    async def _claim_one(self) -> bool:
        names = list(self.ctx.agents)
        job = await asyncio.to_thread(self.ctx.store.claim_job, self.holder, self.settings.lease, names,
                                      list(self._served))
        if job is None:
            return False
        turn = fair_key(job["owner"], job["agent"])
        if turn in self._served:
            self._served.remove(turn)
        self._served.append(turn)  # the owners (and agents) served last wait while another has a job due
        if job["id"] in self._running:
            # Its lease lapsed while this worker still runs it (renewals held up) and it was claimed back here:
            # the claim renewed the lease for the attempt going on; a second one would run the job twice.
            log.warning("job lease lapsed and was claimed back; its attempt goes on",
                        extra={"fields": {"job_id": job["id"]}})
            return True
        self._running[job["id"]] = asyncio.create_task(self._execute(job), name=f"job {job['id']}")
        return True

    async def _idle(self) -> None:
        """Wait until this process queues a job or a running one ends, the store changes (another process may
        have queued one), the next job is due, or ``poll`` passes."""
        timeout = self.settings.poll
        if len(self._running) < self.settings.concurrency:
            due = await asyncio.to_thread(self.ctx.store.job_next_due)
            if due is not None:
                timeout = min(timeout, max(0.0, due - time.time()) + 0.005)
        await asyncio.to_thread(self.ctx.store.wait_for_jobs, timeout, self._poke)

    async def _execute(self, job: JobRecord) -> None:
        started = time.monotonic()
        if telemetry.enabled():  # this job's task: its run's trace and span ids go on its log lines
            telemetry.REQUEST.set(telemetry.RequestTrace())
        self.observe("started", job, time.time() - job["run_after"])
        handler = HANDLERS.get(job["kind"])
        work = asyncio.create_task(handler(self.ctx, job)) if handler else None
        renew = asyncio.create_task(self._renew(job, work)) if work else None
        try:
            if work is None:
                raise JobError(f"unknown job kind {job['kind']!r}", permanent=True)
            result = await work
            if await asyncio.to_thread(self.ctx.store.finish_job, job["id"], self.holder, result):
                self.observe("done", job, time.monotonic() - started)
                if self.finished is not None:
                    try:
                        self.finished(job, result)
                    except Exception:
                        log.exception("job finished hook failed", extra={"fields": {"job_id": job["id"]}})
            else:  # cancelled meanwhile (its run stopped for it, or finished first) or taken over: not ours
                await self._let_go(job, time.monotonic() - started)
        except asyncio.CancelledError:
            if not self._stopping and not (work and work.cancelled()):
                raise
            # cancelled by a lost lease or by stop(). Stopped: released for another worker, the attempt not
            # counted (a stop is no failure of the job: on its last attempt it would be dead). Lost: if it was
            # cancelled, the thread's next job waits for this worker to let go of it
            store = self.ctx.store
            if not (self._stopping and await asyncio.to_thread(store.release_job, job["id"], self.holder,
                                                               "the worker stopped")):
                await asyncio.to_thread(store.let_go_job, job["id"], self.holder)
            self.observe("released", job, time.monotonic() - started)
        except JobPostponed as exc:  # e.g. its conversation is busy: no failure, no attempt used
            log.info("job postponed", extra={"fields": {"job_id": job["id"], "reason": str(exc),
                                                        "delay": exc.delay}})
            with contextlib.suppress(StoreUnavailable):  # else its lease lapses and it is claimed again
                await asyncio.to_thread(self.ctx.store.release_job, job["id"], self.holder, str(exc), exc.delay)
            self.observe("released", job, time.monotonic() - started)
        except Exception as exc:
            try:
                await self._failed(job, exc, time.monotonic() - started)
            except StoreUnavailable as down:  # its lease lapses and it is claimed again once the store is back
                log.warning("job outcome not recorded: store unavailable", extra={"fields": {
                    "job_id": job["id"], "error": str(down)}})
        finally:
            if renew is not None:
                renew.cancel()
            self._running.pop(job["id"], None)
            self._poke.set()

    async def _failed(self, job: JobRecord, exc: Exception, seconds: float) -> None:
        permanent = isinstance(exc, JobError | ChannelError) and exc.permanent
        message = str(exc) or type(exc).__name__
        s = self.settings
        outage = isinstance(exc, ChannelError) or (isinstance(exc, JobError) and exc.outage)
        base, cap = (s.delivery_backoff, s.delivery_max_backoff) if outage else (s.backoff, s.max_backoff)
        delay = None if permanent else retry_delay(job["attempts"], base, cap)
        status = await asyncio.to_thread(self.ctx.store.fail_job, job["id"], self.holder, message, delay)
        if not status:  # cancelled meanwhile (its run was stopped for it) or taken over: no failure of ours
            await self._let_go(job, seconds)
            return
        log.warning("job failed", extra={"fields": {"job_id": job["id"], "kind": job["kind"], "error": message,
                                                    "attempt": job["attempts"], "now": status}})
        if not isinstance(exc, JobError | ChannelError):
            log.debug("job traceback", exc_info=exc)
        self.observe("dead" if status == "dead" else "retried", job, seconds)

    async def _let_go(self, job: JobRecord, seconds: float) -> None:
        """A job cancelled while it ran: its lease let go at once (its conversation's next job waits for it)."""
        await asyncio.to_thread(self.ctx.store.let_go_job, job["id"], self.holder)
        self.observe("released", job, seconds)

    async def _renew(self, job: JobRecord, work: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            try:
                held = await asyncio.to_thread(self.ctx.store.renew_job, job["id"], self.holder, self.settings.lease)
            except StoreUnavailable:  # nobody can claim it meanwhile either: renew again at the next turn
                continue
            if not held:
                log.warning("job lost (cancelled or taken over); stopping it",
                            extra={"fields": {"job_id": job["id"]}})
                work.cancel()
                return

    async def _drain(self) -> None:
        """Give running jobs ``shutdown_timeout`` to finish, then cancel them (released to be retried)."""
        self._stopping = True
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running.values()), timeout=self.settings.shutdown_timeout)
        for task in pending:
            task.cancel(msg=SHUTDOWN)  # their runs are stored interrupted, not cancelled by a user
        await asyncio.gather(*pending, return_exceptions=True)

    async def _schedules(self) -> None:
        """Schedules, retention and fetching channels of the agents served now, at each turn (at most
        ``MAX_SLEEP`` apart, or at once after ``agents_changed``)."""
        while True:
            self._changed.clear()
            await self._follow_sources()
            for what, tick in (("schedules", self.scheduler.tick), ("retention", self.retention.tick)):
                try:  # each on its own: a failing one holds back neither the other nor the next turn
                    if await asyncio.to_thread(tick, time.time()):
                        self._poke.set()
                except StoreUnavailable as exc:
                    log.warning("schedules: store unavailable; retrying", extra={"fields": {"error": str(exc)}})
                    break
                except Exception:
                    log.exception("%s failed; retrying", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.scheduler.sleep_for(time.time()))

    async def _follow_sources(self) -> None:
        """A task per fetching channel of the agents served now: started for a new one, cancelled for one
        gone, both for one replaced (its agent's new version loads its channels afresh: a new address, a new
        allow_from)."""
        wanted = {(agent, name): ch for agent, channels in dict(self.ctx.channels).items()
                  for name, ch in dict(channels).items() if isinstance(ch, SourceChannel)}
        await self._end_sources([key for key, (ch, _) in self._sources.items() if wanted.get(key) is not ch])
        for (agent, name), ch in wanted.items():
            if (agent, name) not in self._sources:
                task = asyncio.create_task(self._source(agent, name, ch), name=f"source {agent}/{name}")
                self._sources[(agent, name)] = (ch, task)

    async def _end_sources(self, keys: list[tuple[str, str]]) -> None:
        """Cancel these channels' fetching and wait (briefly) for it to let go of its connection."""
        tasks = [self._sources.pop(key)[1] for key in keys]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _source(self, agent: str, name: str, channel: SourceChannel) -> None:
        """A channel's fetch loop, restarted with backoff if it ever fails."""
        failures = 0
        while True:
            try:
                await channel.source(self.sink.for_channel(name, agent))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("channel source failed; restarting", extra={"fields": {
                    "agent": agent, "channel": name, "error": str(exc) or type(exc).__name__}})
                await asyncio.sleep(retry_delay(failures, 1.0, 60.0))
