"""A call that waits for approval in a conversation an SMS started, decided in `halguru dev`: its answer goes
to the person who texted, once, as it does when the CLI or the console decides it."""

from __future__ import annotations

from pathlib import Path

from halguru.agents.loader import load_agent
from halguru.agents.runtime import collect_result, run
from halguru.channels.base import Inbound
from halguru.jobs.pipeline import StoreSink, inbound_id
from halguru.jobs.takeover import HUMAN_REPLY
from halguru.store import open_store
from halguru.tui.app import DevApp
from halguru.tui.screens import EditScreen
from tests.tui.test_dev_app import wait_for

ANN, OURS = "+15557654321", "+15550001111"


async def test_an_approval_decided_in_the_debugger_is_answered_on_the_channel(write_agent, tmp_path: Path) -> None:
    """Opened in the debugger, the paused run of an SMS's conversation could not be approved (F9: 'no tool call
    waits for approval'), and a run approved there had its answer shown in the debugger only."""
    (tmp_path / "script.yaml").write_text("- tool_calls: [{name: refund, arguments: {order: A1}}]\n")
    folder = write_agent(f"name: shop\nmodel: scripted:{tmp_path / 'script.yaml'}\ntools: [refund]\n"
                         "approvals: [refund]\n",
                         "from halguru import tool\n\n@tool\ndef refund(order: str) -> str:\n"
                         "    'Refund an order.'\n    return 'refunded'\n")
    store = open_store()
    message = Inbound(channel="twilio", agent="shop", message_id="SM1", sender=ANN, thread=f"{OURS}|{ANN}",
                      text="refund A1 please", reply={"to": ANN, "from": OURS})
    StoreSink(store).accept(message)
    conversation = store.thread_conversation("twilio", "shop", message.thread, owner="channel:twilio")
    store.update_channel_message("twilio", inbound_id("shop", "SM1"), conversation_id=conversation)
    paused = await collect_result(run(load_agent(folder), message.text, conversation, store=store))
    assert paused.status == "paused"
    (tmp_path / "script.yaml").write_text("- Refunded A1.\n")  # what the model says once the refund ran

    app = DevApp(folder, run_id=paused.run_id, watch=False, export_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.awaiting is not None)
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.last_answer == "Refunded A1.")
    answers = [j for j in store.list_jobs(10) if j["kind"] == HUMAN_REPLY]
    assert [(j["payload"]["text"], j["payload"]["reply"]["to"]) for j in answers] == [("Refunded A1.", ANN)]
