"""OpenAI's POST /v1/embeddings for the embedders the operator serves (``embedders``), as LangChain's and
LlamaIndex's OpenAIEmbeddings and Open WebUI call it: it was a 404, so a RAG setup pointed at the server had to
embed elsewhere."""

from __future__ import annotations

import base64
import struct

import httpx
import numpy as np
import openai
import pytest

from halguru.rag.embedders import get_embedder

TEXTS = ["how do I copy a folder", "the weather is nice today"]


@pytest.fixture
def served(serve, api_key):
    server = serve(embedders=["wordllama"])
    return server, openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0, timeout=60)


def test_the_openai_sdk_gets_the_embedders_own_vectors(served) -> None:
    server, oai = served
    own = np.asarray(get_embedder("wordllama").embed(TEXTS))
    sdk = oai.embeddings.create(model="wordllama", input=TEXTS)  # the SDK asks for base64 and decodes it
    assert [d.index for d in sdk.data] == [0, 1] and sdk.model == "wordllama"
    assert np.allclose([d.embedding for d in sdk.data], own, atol=1e-6)
    one = oai.embeddings.create(model="wordllama", input=TEXTS[0], encoding_format="float")
    assert len(one.data) == 1 and np.allclose(one.data[0].embedding, own[0], atol=1e-6)
    assert one.usage.prompt_tokens == one.usage.total_tokens > 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {oai.api_key}"}) as http:
        raw = http.post("/v1/embeddings", json={"model": "wordllama", "input": TEXTS[1], "encoding_format": "base64",
                                                "user": "someone"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert np.allclose(struct.unpack(f"<{len(packed) // 4}f", packed), own[1], atol=1e-6)


def test_only_the_served_embedders_by_name_and_bad_input_is_refused_in_openais_shape(served, serve, api_key) -> None:
    _, oai = served
    for model in ("minilm", "llama-cpp:/etc/passwd", "openai:text-embedding-3-small"):  # a file, the server's key
        with pytest.raises(openai.NotFoundError) as refused:
            oai.embeddings.create(model=model, input="hi")
        assert refused.value.body["code"] == "model_not_found" and refused.value.body["param"] == "model"
        assert refused.value.body["message"].endswith("this server embeds with wordllama")
    for request, param in (({"input": ""}, "input"), ({"input": ["hi", ""]}, "input.1"),
                           ({"input": "hi", "dimensions": 12}, "dimensions"),
                           ({"input": "hi", "extra_body": {"truncate": 1}}, "truncate")):
        with pytest.raises(openai.BadRequestError) as bad:
            oai.embeddings.create(model="wordllama", **request)  # type: ignore[arg-type]
        assert bad.value.body["param"] == param, bad.value.body
    for request in ({"input": [[1, 2, 3]]}, {"input": ["x"] * 2049}, {"input": []}):
        with pytest.raises(openai.UnprocessableEntityError):
            oai.embeddings.create(model="wordllama", encoding_format="float", **request)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(oai.base_url), api_key="hg_nope", max_retries=0).embeddings.create(
            model="wordllama", input="hi")
    plain = serve()  # none served unless the operator says
    with pytest.raises(openai.NotFoundError, match="serves no embedder"):
        openai.OpenAI(base_url=f"{plain.url}/v1", api_key=api_key(), max_retries=0).embeddings.create(
            model="wordllama", input="hi")


def test_a_burst_past_the_embedding_queue_is_a_503_to_send_again_and_the_rest_are_answered(
        served, api_key, monkeypatch) -> None:
    """Requests take turns on one embedding thread; they queued without bound, each keeping its texts in memory.
    Past MAX_EMBEDDING_REQUESTS one is told to send again later (503, Retry-After), and the queued ones answer."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from halguru_server import openai_embeddings

    server, oai = served
    release, real = threading.Event(), openai_embeddings._embed
    monkeypatch.setattr(openai_embeddings, "_embed", lambda name, texts: (release.wait(30), real(name, texts))[1])
    limit = openai_embeddings.MAX_EMBEDDING_REQUESTS
    headers = {"Authorization": f"Bearer {oai.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http, ThreadPoolExecutor(limit) as pool:
        queued = [pool.submit(http.post, "/v1/embeddings", json={"model": "wordllama", "input": f"text {i}"})
                  for i in range(limit)]
        deadline = time.monotonic() + 30
        while openai_embeddings._taken < limit and time.monotonic() < deadline:
            time.sleep(0.05)
        # from another key: the first key's next request would be refused sooner, past its max_in_flight (16)
        refused = http.post("/v1/embeddings", json={"model": "wordllama", "input": "one more"},
                            headers={"Authorization": f"Bearer {api_key('other')}"})
        release.set()
        answers = [f.result() for f in queued]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.json()["error"]["code"] == "queue_full"
    assert [a.status_code for a in answers] == [200] * limit
    assert openai_embeddings._taken == 0
    assert oai.embeddings.create(model="wordllama", input="after").data  # the queue is free again
