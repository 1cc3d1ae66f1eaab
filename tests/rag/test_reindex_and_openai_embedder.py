"""Re-indexing a base with another embedder, and the openai embedder against a real /v1/embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import rag
from halguru.rag.errors import KnowledgeError
from tests.llama_server import llama_server


def test_reindex_switches_embedder_and_keeps_every_document(docs, cli):
    rag.create("docs")
    rag.ingest("docs", [docs])
    before = sorted(h.citation for h in rag.search("docs", "How do I install halguru?", k=5, mode="fts"))
    with pytest.raises(KnowledgeError, match=r"halguru kb reindex docs --embedder wordllama:128"):
        rag.search("docs", "install", embedder="wordllama:128")
    out = cli("kb", "reindex", "docs", "--embedder", "wordllama:128").output
    assert "5 added" in out
    info = {i.name: i for i in rag.list_bases()}["docs"]
    assert info.embedder == "wordllama:128" and info.documents == 5
    assert rag.search("docs", "How do I install halguru?", k=1)[0].citation == "docs/guide.md#Install"
    after = sorted(h.citation for h in rag.search("docs", "How do I install halguru?", k=5, mode="fts"))
    assert after == before


def test_reindex_refuses_when_sources_are_gone(docs, tmp_path: Path):
    rag.create("docs")
    rag.ingest("docs", [docs])
    (docs / "faq.txt").unlink()
    with pytest.raises(KnowledgeError, match="source files are gone"):
        rag.reindex("docs", "wordllama:128")
    assert rag.search("docs", "install", k=1)  # the base is untouched


@pytest.mark.llama
def test_openai_embedder_against_a_real_embeddings_endpoint(docs, tmp_path: Path, monkeypatch):
    with llama_server(tmp_path / "server.log", "--embedding", "True") as base_url:
        monkeypatch.setenv("HALGURU_EMBEDDINGS_BASE_URL", base_url)
        kb = rag.create("remote", "openai:smollm2")
        assert kb.meta.embedder == "openai:smollm2" and kb.meta.dimension == 576
        summary = rag.ingest("remote", [docs])
        assert len(summary.added) == 5
        hits = rag.search("remote", "How do I install halguru?", k=3)
        assert "docs/guide.md#Install" in {h.citation for h in hits}
