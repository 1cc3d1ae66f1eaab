"""`last` names the latest run wherever a run id is asked for reading (`logs show`, `logs replay`, `logs export`,
`dev --run`), as `--conversation last` names the latest conversation: a developer who just ran an agent had to
list the runs and copy an id to look at what it did."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from halguru.agents.runtime import run_to_result
from halguru.models.scripted import ScriptedModel
from halguru.tui.app import DevApp


async def test_last_is_the_latest_run_not_a_test_run(write_agent) -> None:
    agent = write_agent("name: echoer\nmodel: scripted\n")
    await run_to_result(agent, "the first question", model=ScriptedModel(["first"]))
    latest = await run_to_result(agent, "the latest question", model=ScriptedModel(["latest"]))
    await run_to_result(agent, "made by halguru test", model=ScriptedModel(["test"]), metadata={"test": True})
    app = DevApp(None, run_id="last", watch=False)
    async with app.run_test(size=(100, 30)):
        assert app.stored is not None and app.stored.id == latest.run_id


def test_logs_show_replay_and_export_take_last(cli, write_agent, tmp_path: Path) -> None:
    agent = write_agent("name: echoer\nmodel: scripted\n")
    cli("run", str(agent), "an older question")
    cli("run", str(agent), "the latest question")
    latest = json.loads(cli("logs", "--json", "-n", "1").stdout)[0]["id"]
    shown = cli("logs", "show", "last").stdout
    assert latest in shown and "the latest question" in shown
    assert json.loads(cli("logs", "show", "last", "--json").stdout)["run"]["id"] == latest
    assert f"replay of {latest}: identical answer" in cli("logs", "replay", "last").stdout
    assert "the latest question" in cli("logs", "export", "last").stdout


def test_last_with_no_run_yet_is_one_line(cli_error) -> None:
    line = cli_error("logs", "show", "last")
    assert "no run yet" in line and "halguru run" in line


def test_replaying_a_run_still_running_says_so(cli_error, halguru_home: Path) -> None:
    """`halguru logs replay last` while a `halguru run` still answered in another terminal said the run 'has no
    recorded events to open or replay', as of a broken run; it is only not done yet."""
    from halguru.store import open_store

    open_store().start_run("run_busy", "conv_busy", "echoer", "scripted", "a long question")  # the CLI's store
    for reference in ("last", "run_busy"):
        line = cli_error("logs", "replay", reference)
        assert line == "Error: run run_busy is still running: open or replay it once it has finished", line


def test_logs_conversation_filter_takes_last_and_refuses_an_unknown_id(cli, write_agent) -> None:
    """`halguru logs -c last` printed "No runs match." (it looked for a conversation called `last`), as did a
    mistyped id: a filter that silently matched nothing, though `logs conversation last` and `run -c last` take it."""
    echo = write_agent("name: echoer\nmodel: scripted\n", name="echoer")
    other = write_agent("name: other\nmodel: scripted\n", name="other")
    cli("run", str(echo), "first turn")
    cli("run", str(echo), "second turn", "-c", "last")
    cli("run", str(other), "elsewhere")
    newest = json.loads(cli("logs", "-c", "last", "--json").stdout)
    assert [r["input"] for r in newest] == ["elsewhere"]
    echoed = json.loads(cli("logs", "-c", "last", "--agent", "echoer", "--json").stdout)
    assert [r["input"] for r in echoed] == ["second turn", "first turn"]
    assert "second turn" in cli("logs", "-c", "last", "--agent", "echoer").stdout


def test_logs_conversation_filter_with_an_unknown_id_is_one_line(cli_error) -> None:
    line = cli_error("logs", "-c", "conv_nope")
    assert "no conversation 'conv_nope'" in line and "halguru logs --conversations" in line
    assert "no conversation yet" in cli_error("logs", "-c", "last")


def test_conversation_last_is_not_one_that_halguru_test_made(cli, write_agent) -> None:
    """`halguru test` (or `eval`) after a run: `run -c last` went on with the test's conversation ("My name is
    Ada."), and `logs conversation last` showed it, though `halguru logs` hides those runs."""
    agent = write_agent("name: echoer\nmodel: scripted\n")
    mine = asyncio.run(run_to_result(agent, "my own question", model=ScriptedModel(["mine"])))
    asyncio.run(run_to_result(agent, "made by halguru test", model=ScriptedModel(["test"]), metadata={"test": True}))
    assert "my own question" in cli("logs", "conversation", "last").stdout
    cli("run", str(agent), "and then?", "-c", "last")
    [latest] = json.loads(cli("logs", "--json", "-n", "1").stdout)
    assert (latest["input"], latest["conversation_id"]) == ("and then?", mine.conversation_id)


async def test_logs_conversations_hides_the_ones_halguru_test_made_unless_all(cli, write_agent) -> None:
    """`halguru logs --conversations` listed every conversation `halguru test` and `eval` had made (one per
    case, each run) above the user's own, though `halguru logs` hides their runs; `--all` shows them."""
    agent = write_agent("name: echoer\nmodel: scripted\n")
    mine = await run_to_result(agent, "my own question", model=ScriptedModel(["mine"]))
    made = await run_to_result(agent, "a test case", model=ScriptedModel(["test"]), metadata={"test": True})
    listed = [c["id"] for c in json.loads(cli("logs", "--conversations", "--json").stdout)]
    assert listed == [mine.conversation_id]
    everything = [c["id"] for c in json.loads(cli("logs", "--conversations", "--all", "--json").stdout)]
    assert everything == [made.conversation_id, mine.conversation_id]
