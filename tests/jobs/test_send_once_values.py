"""What a channel's ``send_part`` gives ``once`` is its own: a provider's id as a string, nothing at all, or a dict.
docs/plugins.md never said it had to be a dict, and anything else failed the reply job after the part had gone
out, so every retry sent it again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from halguru.agents.loader import load_agent
from halguru.channels.base import Outbound, SendOnce
from halguru.jobs.pipeline import StoreSink
from halguru.store import Store
from tests.jobs.test_worker import inbound, make_agent, run_until, worker_for


class ReceiptChannel:
    """Each part's ``send_part`` returns ``receipt``; the first attempt dies after sending."""

    name: ClassVar[str] = "test"

    def __init__(self, receipt: Any):
        self.receipt, self.sent, self.got = receipt, [], []
        self.die = True

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        async def send_part() -> Any:
            self.sent.append(message.text)
            return self.receipt

        got = await once("part:0", send_part)
        self.got.append(got)
        if self.die:
            self.die = False
            raise ConnectionError("worker died after the provider accepted the message")
        return [str(got)] if got else []


@pytest.mark.parametrize("receipt", ["SM123", None, ["SM1", "SM2"], {"sid": "SM9"}])
async def test_a_part_is_sent_once_whatever_send_part_returns(store: Store, tmp_path: Path, receipt: Any) -> None:
    """A str was 'job failed: dictionary update sequence element #0 has length 1; 2 is required', sent again at
    each attempt until the job was dead."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = ReceiptChannel(receipt)
    assert StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] in ("done", "dead"))
    assert store.get_job(job["id"])["status"] == "done", store.get_job(job["id"])
    assert len(channel.sent) == 1
    assert channel.got == [receipt, receipt if receipt is not None else {}]  # the retry gets what was recorded
