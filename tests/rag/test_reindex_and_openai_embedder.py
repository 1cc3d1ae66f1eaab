"""Re-indexing a base with another embedder, and the openai embedder against a real /v1/embeddings."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


@pytest.fixture
def embeddings() -> Iterator[dict[str, Any]]:
    """A /v1/embeddings endpoint on loopback: answers at once, or, once ``drip`` is set, one byte every 0.2 s
    (~30 s for an answer; each byte well within httpx's 120 s per-read timeout)."""
    state: dict[str, Any] = {"drip": False}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["input"]
            body = json.dumps({"data": [{"index": i, "embedding": [len(t), 1.0, 2.0, 3.0]}
                                        for i, t in enumerate(texts)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for at in range(len(body)) if state["drip"] else [0]:
                    self.wfile.write(body[at:at + 1] if state["drip"] else body)
                    self.wfile.flush()
                    time.sleep(0.2 if state["drip"] else 0)
            except OSError:  # the client gave up
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()
    server.server_close()


def test_an_embeddings_endpoint_that_drips_fails_at_the_deadline(docs, embeddings, monkeypatch, cli_error):
    """A server sending its answer a byte at a time held `kb search` (and an agent's retrieval thread) for as long
    as it dripped: httpx's 120 s timeout is per read."""
    from halguru.config import reset_settings

    monkeypatch.setenv("HALGURU_EMBEDDINGS_BASE_URL", embeddings["url"])
    monkeypatch.setenv("HALGURU_EMBED_DEADLINE", "1.5")
    reset_settings()
    rag.create("remote", "openai:m")
    assert len(rag.ingest("remote", [docs]).added) == 5
    embeddings["drip"] = True
    started = time.monotonic()
    with pytest.raises(KnowledgeError) as failed:
        rag.search("remote", "How do I install halguru?", mode="vector")
    assert time.monotonic() - started < 4
    line = (f"embeddings endpoint {embeddings['url']} did not finish its answer within 1.5s "
            "(HALGURU_EMBED_DEADLINE)")
    assert str(failed.value) == line
    started = time.monotonic()
    assert cli_error("kb", "search", "remote", "install", env={"HALGURU_EMBEDDINGS_BASE_URL": embeddings["url"],
                                                                 "HALGURU_EMBED_DEADLINE": "1"}) \
        == f"Error: {line.replace('1.5s', '1s')}"
    assert time.monotonic() - started < 15


def test_the_deadline_s_error_names_where_its_value_was_set(docs, embeddings, monkeypatch):
    """Set in config.toml, the deadline's error still named HALGURU_EMBED_DEADLINE, which nobody had set: the
    user looked for a variable that was not there."""
    from halguru.config import config_path, reset_settings, set_config_value

    monkeypatch.setenv("HALGURU_EMBEDDINGS_BASE_URL", embeddings["url"])
    rag.create("remote", "openai:m")
    rag.ingest("remote", [docs])
    embeddings["drip"] = True
    set_config_value("embed_deadline", "1")
    with pytest.raises(KnowledgeError) as failed:
        rag.search("remote", "How do I install halguru?", mode="vector")
    assert str(failed.value).endswith(f"within 1s (embed_deadline in {config_path()})")
    monkeypatch.setenv("HALGURU_EMBED_DEADLINE", "0.5")  # the environment wins over the file, and is named
    reset_settings()
    with pytest.raises(KnowledgeError, match=r"within 0.5s \(HALGURU_EMBED_DEADLINE\)$"):
        rag.search("remote", "How do I install halguru?", mode="vector")
