"""A SIGKILLed ingest leaves a queryable base that the next ingest completes; agents retrieve and cite."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from halguru import rag
from halguru.agents.loader import load_agent
from halguru.agents.runtime import run_sync
from halguru.models.scripted import ScriptedModel


def call(name: str, **arguments: object) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def test_sigkill_mid_ingest_leaves_a_queryable_base_and_next_ingest_completes(tmp_path, halguru_cmd,
                                                                             subprocess_env):
    folder = tmp_path / "notes"
    folder.mkdir()
    notes = 400  # 100 batches of 4: the kill lands mid-way even on a fast, idle machine
    for i in range(notes):
        (folder / f"note{i:03}.md").write_text(f"# Note {i}\n\nMeeting {i} decided topic-{i} is approved.\n")
    env = {**subprocess_env, "HALGURU_KB_BATCH_CHUNKS": "4"}
    subprocess.run([*halguru_cmd, "kb", "create", "notes"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*halguru_cmd, "kb", "ingest", "notes", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kb = rag.open_base("notes")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        kb.refresh()
        if kb.table.count_rows() >= 8:  # two batches committed, many to go
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kb.refresh()
    partial = kb.table.count_rows()
    assert 0 < partial < notes
    assert rag.search("notes", "meeting decided", k=3, mode="vector")  # queryable after the kill
    summary = rag.ingest("notes", [folder])  # the lock died with the process: no refusal
    assert len(summary.unchanged) == partial and len(summary.added) == notes - partial
    info = rag.open_base("notes").info()
    assert (info.documents, info.chunks) == (notes, notes)  # complete, no duplicates
    assert rag.search("notes", "topic-399 approved", k=1, mode="fts")[0].source == "notes/note399.md"


def write_knowledge_agent(write_agent, mode: str, knowledge: str = "docs") -> object:
    return write_agent(f"name: helper\nmodel: scripted\ninstructions: Answer from the documents.\n"
                       f"knowledge: [{knowledge}]\nretrieval: {{mode: {mode}, top_k: 2}}\n")


def test_auto_retrieval_puts_chunks_in_the_prompt_and_cites(write_agent, docs):
    project = write_knowledge_agent(write_agent, "auto")
    (project / "docs").symlink_to(docs, target_is_directory=True)  # a folder next to agent.yaml
    model = ScriptedModel(["Use pipx install halguru [1]."])
    result = run_sync(project, "How do I install halguru?", model=model, record=False)
    assert result.ok, result.error
    retrieval = [e for e in result.events if e.type == "retrieval"]
    assert len(retrieval) == 1 and retrieval[0].knowledge_base == "helper-docs"
    assert retrieval[0].hits[0]["citation"] == "docs/guide.md#Install" and retrieval[0].hits[0]["score"] > 0
    lines = retrieval[0].hits[0]["lines"]  # the marker names the passage: file, section and line range
    assert f"[1] docs/guide.md#Install, lines {lines}\n" in model.requests[0].messages[0].content
    assert result.output == f"Use pipx install halguru [1].\n\nSources:\n[1] docs/guide.md#Install, lines {lines}"
    assert "helper-docs" in [b.name for b in rag.list_bases()]  # auto-ingested on the first run


def test_an_answer_ends_where_the_model_starts_copying_a_passage(write_agent, docs):
    """A small model goes on with the sources' list after its answer ("[3] label", then a passage's text, under a
    number no passage has): the answer ends before it, and the footer lists what the answer cited."""
    project = write_knowledge_agent(write_agent, "auto")
    (project / "docs").symlink_to(docs, target_is_directory=True)
    first = ScriptedModel(["x"])
    run_sync(project, "How do I install halguru?", model=first, record=False)
    prompt = first.requests[0].messages[0].content
    label = prompt.split("[1] ", 1)[1].split("\n", 1)[0]  # docs/guide.md#Install, lines 1-4
    copied = f"Use pipx install halguru [1].\n\n[3] {label}\n## Install\nRun pipx, or invent a passage."
    result = run_sync(project, "How do I install halguru?", model=ScriptedModel([copied]), record=False)
    assert result.ok, result.error
    assert result.output == f"Use pipx install halguru [1].\n\nSources:\n[1] {label}"


def test_search_knowledge_tool_is_traced_and_recorded(write_agent, docs):
    rag.create("manual")
    rag.ingest("manual", [docs])
    project = write_knowledge_agent(write_agent, "tool", knowledge="manual")
    agent = load_agent(project)
    assert "search_knowledge" in agent.tools
    model = ScriptedModel([call("search_knowledge", query="refund duration"), "Refunds take 14 days [1]."])
    result = run_sync(agent, "How long do refunds take?", model=model)
    assert result.ok, result.error
    kinds = [e.type for e in result.events]
    assert kinds.index("tool_call") < kinds.index("retrieval") < kinds.index("tool_result")
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert tool_result.content.startswith("[1] docs/faq.txt") and "fourteen days" in tool_result.content
    assert result.output.endswith("Sources:\n[1] docs/faq.txt, lines 1-3")
    from halguru.store import open_store

    stored = [e["type"] for e in open_store().get_events(result.run_id)]
    assert "retrieval" in stored


def test_agent_without_knowledge_does_no_retrieval_and_unknown_base_is_one_error(write_agent):
    plain = write_agent("name: plain\nmodel: scripted\n", name="plain")
    result = run_sync(plain, "hi", model=ScriptedModel(["hello"]), record=False)
    assert result.ok and not any(e.type == "retrieval" for e in result.events)
    assert load_agent(plain).knowledge is None
    broken = write_knowledge_agent(write_agent, "auto", knowledge="missing-base")
    failed = run_sync(broken, "hi", model=ScriptedModel(["x"]), record=False)
    assert failed.status == "failed" and "'missing-base' is neither a knowledge base" in failed.error


def test_a_missing_base_names_the_others_on_the_terminal_only(write_agent, docs, cli_error):
    """A served agent whose base was dropped told API and web-chat clients every base on the server."""
    for name in ("manual", "payroll-secrets"):
        rag.create(name, embedder="fast")
    rag.ingest("manual", [docs])
    agent = load_agent(write_agent("name: helper\nmodel: scripted\nknowledge: [manual]\nretrieval: {mode: auto}\n"))
    assert run_sync(agent, "refunds?", model=ScriptedModel(["14 days [1]."]), record=False).ok
    rag.drop("manual")
    failed = run_sync(agent, "refunds?", model=ScriptedModel(["x"]), record=False)
    assert failed.status == "failed"
    assert failed.error == "no knowledge base 'manual'; create it with `halguru kb create manual`"
    assert cli_error("kb", "show", "manual") == ("Error: no knowledge base 'manual' (known: payroll-secrets); "
                                                 "create it with `halguru kb create manual`")
