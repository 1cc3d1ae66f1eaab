"""A running worker follows its agents as they change (serve's registry swaps in a published version or a
rollback): a new agent's schedules and fetching channels are taken up at once, a replaced channel's fetching is
stopped and the new one's started, a removed one's stopped; on both store backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from halguru.channels.base import Inbound, InboundSink, Outbound, SendOnce
from halguru.jobs.handlers import JobContext
from halguru.jobs.schedules import Scheduler
from halguru.jobs.worker import Worker, WorkerSettings
from halguru.store import Store
from tests.jobs.test_schedules import agent_with


class Inbox:
    """A fetching channel: hands its one message to the sink, then waits for more (for ever)."""

    name: ClassVar[str] = "test"

    def __init__(self, message_id: str):
        self.message_id = message_id
        self.fetching = False
        self.sent: list[str] = []

    async def source(self, sink: InboundSink) -> None:
        self.fetching = True
        try:
            await asyncio.to_thread(sink.accept, Inbound(
                channel="test", agent="digest", message_id=self.message_id, sender="ann", thread="ann",
                text=f"mail {self.message_id}", reply={"to": "ann"}))
            await asyncio.Event().wait()
        finally:
            self.fetching = False

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        async def deliver() -> dict[str, Any]:
            self.sent.append(message.text)
            return {"id": f"sent{len(self.sent)}"}

        return [(await once("part:0", deliver))["id"]]


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Sooner than the schedule loop's 30 s turn: the worker was told of the change."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_running_worker_takes_up_new_agents_schedules_and_channels(store: Store, tmp_path: Path) -> None:
    agent = agent_with(tmp_path, cron="0 3 * * *", timezone="UTC")
    Scheduler(store, {"digest": agent}).tick(time.time() - 3 * 86400)  # a worker saw it three days ago
    agents: dict[str, Any] = {}
    channels: dict[str, dict[str, Any]] = {}
    worker = Worker(JobContext(store=store, agents=agents, channels=channels), WorkerSettings(poll=0.05))
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)  # started with no agent: nothing to schedule, nothing to fetch
        first, second = Inbox("m1"), Inbox("m2")
        agents["digest"], channels["digest"] = agent, {"test": first}  # as the registry swaps a version in
        worker.agents_changed()
        await until(lambda: store.job_stats().get("done", 0) == 2, "the missed schedule's run and the reply")
        assert sorted(j["kind"] for j in store.list_jobs(10)) == ["reply", "run"] and first.sent
        assert first.fetching

        channels["digest"] = {"test": second}  # a new version: its channel loaded afresh (another address)
        worker.agents_changed()
        await until(lambda: second.fetching and not first.fetching, "the new channel to replace the old")
        await until(lambda: store.job_stats().get("done", 0) == 3, "the new inbox's reply")
        assert second.sent and len(first.sent) == 1

        channels["digest"] = {}  # a version without the channel
        worker.agents_changed()
        await until(lambda: not second.fetching, "the removed channel to stop")
    finally:
        worker.stop()
        await running
    assert not first.fetching and not second.fetching
