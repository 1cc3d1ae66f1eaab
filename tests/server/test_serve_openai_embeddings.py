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
        with pytest.raises(openai.BadRequestError):
            oai.embeddings.create(model="wordllama", encoding_format="float", **request)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=str(oai.base_url), api_key="hg_nope", max_retries=0).embeddings.create(
            model="wordllama", input="hi")
    plain = serve()  # none served unless the operator says
    with pytest.raises(openai.NotFoundError, match="serves no embedder"):
        openai.OpenAI(base_url=f"{plain.url}/v1", api_key=api_key(), max_retries=0).embeddings.create(
            model="wordllama", input="hi")


def test_one_keys_burst_of_embeddings_takes_its_share_and_another_key_is_answered_among_the_first(
        served, api_key, monkeypatch) -> None:
    """Requests take turns on one embedding thread. Measured before: one key's 16 requests at once took every
    place (16, for all callers), and another key's request was a 503 until they were all answered. Now they take
    turns between clients, as model runs do (the model gate): one key holds at most its share of the waiting
    places (``client_queue_share`` of ``queue_size``: 8), is told to send the rest again later (503 queue_full,
    Retry-After), and another key's request is answered among the first, not after all of them."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from halguru_server import openai_embeddings

    server, oai = served
    release, real, order = threading.Event(), openai_embeddings._embed, []

    def held(name, texts):
        release.wait(30)
        order.append(texts[0])
        return real(name, texts)

    monkeypatch.setattr(openai_embeddings, "_embed", held)
    headers = {"Authorization": f"Bearer {oai.api_key}"}
    gate = server.state.gate
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http, ThreadPoolExecutor(13) as pool:
        burst = [pool.submit(http.post, "/v1/embeddings", json={"model": "wordllama", "input": f"text {i}"})
                 for i in range(12)]
        deadline = time.monotonic() + 30
        while sum(f.done() for f in burst) < 3 and time.monotonic() < deadline:  # one running, 8 waiting
            time.sleep(0.05)
        refused = [f.result() for f in burst if f.done()]
        assert [r.status_code for r in refused] == [503] * 3, [r.text for r in refused]
        assert refused[0].json()["error"]["code"] == "queue_full" and int(refused[0].headers["Retry-After"]) >= 1
        assert "8 requests waiting" in refused[0].json()["error"]["message"], refused[0].text
        other = pool.submit(http.post, "/v1/embeddings", json={"model": "wordllama", "input": "other"},
                            headers={"Authorization": f"Bearer {api_key('other')}"})
        while gate.depth(openai_embeddings.EMBEDDINGS) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        release.set()
        assert other.result().status_code == 200, other.result().text
        answers = [f.result() for f in burst if f.result().status_code != 503]
    assert [a.status_code for a in answers] == [200] * 9
    assert order.index("other") <= 2, order  # the running one, perhaps the key's next, then the other's
    assert gate.depth(openai_embeddings.EMBEDDINGS) == 0
    assert oai.embeddings.create(model="wordllama", input="after").data  # the queue is free again
