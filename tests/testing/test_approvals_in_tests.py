"""Conversation tests of turns that wait for a human: ``decide:`` approves, edits or rejects each pending call in
order, live, recorded and replayed; `logs export` of such a conversation writes those decisions (it wrote each
continuation as a new turn repeating the user's message, which then failed with "waits for approval")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from halguru.agents.runtime import collect_result, run_to_result
from halguru.models.scripted import ScriptedModel
from halguru.orchestration.approvals import resume_events
from halguru.store import open_store
from halguru.testing.export import run_to_test_yaml

TOOLS = '''
from pathlib import Path
from halguru import tool


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    with (Path(__file__).parent / "outbox.txt").open("a") as out:
        out.write(f"{to}: {body}\\n")
    return f"sent to {to}"
'''
CALL = {"tool_calls": [{"name": "send_email", "arguments": {"to": "ann@example.com", "body": "hi"}}]}


def mailer(write_agent, script: list) -> Path:
    folder = write_agent("name: mailer\nmodel: scripted:s.yaml\ntools: [send_email]\napprovals: [send_email]\n",
                         TOOLS, name="mailer")
    (folder / "s.yaml").write_text(yaml.safe_dump(script))
    return folder


def test_decide_approves_edits_and_rejects_live_recorded_and_replayed(write_agent, cli):
    folder = mailer(write_agent, [CALL, "Sent.", CALL, "Sent again.", CALL, "I did not send it."])
    (folder / "tests").mkdir()
    (folder / "tests" / "test_mail.yaml").write_text(yaml.safe_dump({"tests": [{"name": "three decisions", "turns": [
        {"user": "mail ann", "decide": ["approve"], "expect": {"tool_called": "send_email", "equals": "Sent."}},
        {"user": "again, to bob", "decide": [{"approve": {"to": "bob@example.com", "body": "hi"}}],
         "expect": {"equals": "Sent again."}},
        {"user": "once more", "decide": [{"reject": "enough"}], "expect": {"equals": "I did not send it."}},
    ]}]}, sort_keys=False))
    out = cli("test", str(folder), "--live").output
    assert "1 passed" in out, out
    assert (folder / "outbox.txt").read_text() == "ann@example.com: hi\nbob@example.com: hi\n"
    cli("test", str(folder), "--record")
    (folder / "outbox.txt").unlink()
    assert "1 passed" in cli("test", str(folder)).output  # replayed: the tools' recorded results, nothing sent
    assert not (folder / "outbox.txt").exists()


def test_a_turn_left_waiting_fails_saying_so(write_agent, cli):
    folder = mailer(write_agent, [CALL, "Sent."])
    (folder / "tests").mkdir()
    (folder / "tests" / "test_mail.yaml").write_text(yaml.safe_dump({"tests": [{"name": "undecided", "turns": [
        {"user": "mail ann", "expect": {"equals": "Sent."}}]}]}))
    out = cli("test", str(folder), "--live", code=1).output
    assert "send_email waits for approval" in out, out


def test_logs_export_writes_the_decisions_and_the_export_passes(write_agent, cli):
    folder = mailer(write_agent, [CALL, "Sent."])

    async def conversation() -> str:
        paused = await run_to_result(folder, "mail ann", model=ScriptedModel([CALL]))
        rejected = await collect_result(resume_events(paused.run_id, reject="not yet",
                                                      model=ScriptedModel([CALL])))
        done = await collect_result(resume_events(rejected.run_id, model=ScriptedModel(["Sent."])))
        return done.run_id

    last = asyncio.run(conversation())
    exported = yaml.safe_load(run_to_test_yaml(open_store(), last))
    [turn] = exported["tests"][0]["turns"]
    assert list(turn) == ["user", "decide", "expect"]
    assert turn["user"] == "mail ann" and turn["decide"] == [{"reject": "not yet"}, "approve"]
    assert turn["expect"] == {"tool_called": [{"name": "send_email", "arguments": {"to": "ann@example.com",
                                                                                   "body": "hi"}}] * 2,
                              "equals": "Sent."}
    (folder / "tests").mkdir()
    (folder / "s.yaml").write_text(yaml.safe_dump([CALL, CALL, "Sent."]))
    (folder / "tests" / "test_exported.yaml").write_text(yaml.safe_dump(exported, sort_keys=False))
    assert "1 passed" in cli("test", str(folder), "--live").output

