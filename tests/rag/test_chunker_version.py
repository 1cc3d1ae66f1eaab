"""A base remembers which chunking made it: after an upgrade that chunks files otherwise, an ingest skips the
unchanged files, so the base says it is older and `kb reindex NAME` (its own embedder) re-reads them all; an
agent's folder base is rebuilt by itself."""

from __future__ import annotations

import json
from pathlib import Path

from halguru import rag
from halguru.agents.loader import load_agent
from halguru.rag import agent as rag_agent
from halguru.rag.chunking import CHUNKER_VERSION
from halguru.rag.store import META_FILE, base_folder


def age(name: str) -> None:
    """Make base ``name`` look as an older halguru left it: chunked otherwise (a wrong section) and unversioned."""
    kb = rag.open_base(name)
    kb.table.update(values={"heading": "1. Tell the client to log into another server without allowi"})
    meta = base_folder(name) / META_FILE
    data = json.loads(meta.read_text())
    data.pop("chunker")
    meta.write_text(json.dumps(data))


def citations(name: str) -> set[str]:
    return {h.citation for h in rag.search(name, "install halguru with pipx", k=10, mode="fts")}


def test_a_new_base_records_the_chunking_that_made_it(docs: Path, cli) -> None:
    cli("kb", "create", "docs", "--embedder", "fast")
    cli("kb", "ingest", "docs", str(docs))
    assert rag.open_base("docs").meta.chunker == CHUNKER_VERSION
    assert "older halguru" not in cli("kb", "show", "docs").output
    assert json.loads(cli("kb", "show", "docs", "--json").output)["chunker"] == CHUNKER_VERSION


def test_an_older_base_says_so_and_reindex_rereads_every_file_with_its_own_embedder(docs: Path, cli) -> None:
    cli("kb", "create", "docs", "--embedder", "fast")
    cli("kb", "ingest", "docs", str(docs))
    age("docs")
    assert "docs/guide.md#Install" not in citations("docs")

    shown = cli("kb", "show", "docs").output
    assert "chunked by an older halguru: `halguru kb reindex docs` re-reads its files" in shown
    ingested = cli("kb", "ingest", "docs", str(docs))
    assert "note: docs was chunked by an older halguru" in ingested.stderr
    assert "0 added, 0 updated" in ingested.stdout  # unchanged files are skipped: still the old chunks
    assert "docs/guide.md#Install" not in citations("docs")

    out = cli("kb", "reindex", "docs").output
    assert out.startswith("Re-indexed docs with wordllama: 5 added")
    assert "docs/guide.md#Install" in citations("docs")
    assert rag.open_base("docs").meta.chunker == CHUNKER_VERSION
    assert "older halguru" not in cli("kb", "show", "docs").output
    assert "note:" not in cli("kb", "ingest", "docs", str(docs)).stderr


def test_an_agents_older_folder_base_is_rebuilt_on_its_next_run(write_agent, monkeypatch) -> None:
    folder = write_agent("name: helper\nmodel: scripted\nknowledge: [notes]\n"
                         "retrieval: {mode: auto, top_k: 3, embedder: fast}\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "cat.md").write_text("# Cat\n\nThe office cat is called Pixel.\n", encoding="utf-8")
    agent = load_agent(folder)
    assert [h.citation for r in agent.knowledge.retrieve("office cat", k=3) for h in r.hits] == ["notes/cat.md#Cat"]
    age("helper-notes")

    rag_agent.forget_synced()  # as the next process, after the upgrade
    agent = load_agent(folder)
    assert [h.citation for r in agent.knowledge.retrieve("office cat", k=3) for h in r.hits] == ["notes/cat.md#Cat"]
    meta = rag.open_base("helper-notes").meta
    assert meta.chunker == CHUNKER_VERSION and meta.embedder == "wordllama"
    assert meta.folder == str((folder / "notes").resolve())
