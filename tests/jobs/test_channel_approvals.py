"""A call that waits for approval in a conversation an SMS started: whichever way it is decided (the Python API,
or `halguru runs resume` of a decision whose continuation stalled), the person who texted gets the answer, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from halguru.agents.loader import load_agent
from halguru.agents.runtime import collect_result, run
from halguru.channels.base import Inbound
from halguru.jobs.pipeline import StoreSink, inbound_id
from halguru.jobs.takeover import HUMAN_REPLY
from halguru.orchestration import approvals, durable
from halguru.store import Store, open_store

ANN, OURS = "+15557654321", "+15550001111"


def paused_sms(write_agent, tmp_path: Path, store: Store) -> str:
    """An SMS's conversation whose run waits for approval of a refund; the model then answers 'Refunded A1.'."""
    (tmp_path / "script.yaml").write_text("- tool_calls: [{name: refund, arguments: {order: A1}}]\n")
    folder = write_agent(f"name: shop\nmodel: scripted:{tmp_path / 'script.yaml'}\ntools: [refund]\n"
                         "approvals: [refund]\n",
                         "from halguru import tool\n\n@tool\ndef refund(order: str) -> str:\n"
                         "    'Refund an order.'\n    return 'refunded'\n")
    message = Inbound(channel="twilio", agent="shop", message_id="SM1", sender=ANN, thread=f"{OURS}|{ANN}",
                      text="refund A1 please", reply={"to": ANN, "from": OURS})
    StoreSink(store).accept(message)
    conversation = store.thread_conversation("twilio", "shop", message.thread, owner="channel:twilio")
    store.update_channel_message("twilio", inbound_id("shop", "SM1"), conversation_id=conversation)
    paused = asyncio.run(collect_result(run(load_agent(folder), message.text, conversation, store=store)))
    assert paused.status == "paused"
    (tmp_path / "script.yaml").write_text("- Refunded A1.\n")
    return paused.run_id


def answers(store: Store) -> list[tuple[str, str]]:
    return [(j["payload"]["text"], j["payload"]["reply"]["to"]) for j in store.list_jobs(20)
            if j["kind"] == HUMAN_REPLY]


def test_an_approval_through_the_python_api_is_answered_on_the_channel(write_agent, tmp_path: Path) -> None:
    """`approvals.approve(run_id)` ran the call and stored 'Refunded A1.', and the person who texted got nothing."""
    store = open_store()
    run_id = paused_sms(write_agent, tmp_path, store)
    result = approvals.approve(run_id, store=store)
    assert result.output == "Refunded A1."
    assert answers(store) == [("Refunded A1.", ANN)]


def test_a_rejection_through_the_python_api_is_answered_on_the_channel(write_agent, tmp_path: Path) -> None:
    store = open_store()
    run_id = paused_sms(write_agent, tmp_path, store)
    (tmp_path / "script.yaml").write_text("- Not refunded, sorry.\n")
    assert approvals.reject(run_id, "not today", store=store).output == "Not refunded, sorry."
    assert answers(store) == [("Not refunded, sorry.", ANN)]


def test_a_stalled_decision_resumed_is_answered_on_the_channel_once(write_agent, tmp_path: Path,
                                                                   other_store) -> None:
    """A decision whose process died before its continuation started, then `halguru runs resume`: the call ran
    and the answer was stored, never sent to the person who texted. Resumed twice at once, it is sent once."""
    store = open_store()
    run_id = paused_sms(write_agent, tmp_path, store)
    dead = other_store(lease=0.1)  # the deciding process: it recorded the decision, then died
    assert dead.decide_approval(run_id, "approved", None)
    dead.close()
    time.sleep(0.3)  # its claim expires

    async def both() -> list[BaseException | object]:
        async def one() -> object:
            return await collect_result(durable.resume_events(run_id, store=store))

        return await asyncio.gather(one(), one(), return_exceptions=True)

    done = asyncio.run(both())
    assert [r.output for r in done if not isinstance(r, BaseException)] == ["Refunded A1."]
    assert answers(store) == [("Refunded A1.", ANN)]


def test_an_approved_continuation_cut_while_answering_and_resumed_is_answered_on_the_channel(
        write_agent, tmp_path: Path) -> None:
    """Approved, the refund ran and the continuation was cut while the model wrote the answer (Ctrl-C, a server
    shutdown); `halguru runs resume` of it wrote 'Refunded A1.' into the conversation, and the person who texted
    never got it: only the decision's own continuation queued the answer."""
    store = open_store()
    run_id = paused_sms(write_agent, tmp_path, store)
    (tmp_path / "script.yaml").write_text(yaml.safe_dump([{"text": " ".join(["Refunded"] * 200),
                                                           "token_delay": 0.05}]))

    async def cut() -> str:
        task = asyncio.create_task(collect_result(approvals.resume_events(run_id, store=store)))
        for _ in range(400):  # until the continuation's model call (after the refund) is under way
            runs = [r for r in store.list_runs(10) if r["id"] != run_id]
            if runs and any(e["type"] == "model_call" for e in store.get_events(runs[0]["id"])):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        [continuation] = [r for r in store.list_runs(10) if r["id"] != run_id]
        return continuation["id"]

    continuation = asyncio.run(cut())
    assert store.get_run(continuation)["status"] == "cancelled" and answers(store) == []
    (tmp_path / "script.yaml").write_text("- Refunded A1.\n")
    resumed = asyncio.run(collect_result(durable.resume_events(continuation, store=store)))
    assert resumed.output == "Refunded A1."
    assert answers(store) == [("Refunded A1.", ANN)]


def test_a_rejection_whose_agent_no_longer_loads_still_answers_the_texter(write_agent, tmp_path: Path) -> None:
    """With the agent's folder moved, a reject freed the conversation but no continuation ran: the person who
    texted got nothing, and the conversation kept no trace of their message. Now the turn is answered with
    ``DECLINED``, stored and queued for the channel once."""
    import pytest

    from halguru.errors import HalguruError

    store = open_store()
    run_id = paused_sms(write_agent, tmp_path, store)
    approval = store.find_approval(run_id)
    assert approval is not None and approval["agent_path"]
    folder = Path(approval["agent_path"])
    folder.rename(folder.with_name("moved"))
    with pytest.raises(HalguruError, match=f"run {run_id} is rejected, but no continuation ran .*its conversation "
                                           "can go on, answered 'Sorry, I could not do that"):
        approvals.reject(run_id, "not today", store=store)
    assert answers(store) == [(approvals.DECLINED, ANN)]
    with pytest.raises(HalguruError):  # decided once: nothing queued again
        approvals.reject(run_id, "not today", store=store)
    assert answers(store) == [(approvals.DECLINED, ANN)]
    history = [(m.role, m.content) for m in store.get_messages(approval["conversation_id"])]
    assert history == [("user", "refund A1 please"), ("assistant", approvals.DECLINED)]
