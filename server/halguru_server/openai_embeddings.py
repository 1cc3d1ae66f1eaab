"""OpenAI's ``POST /v1/embeddings``, for the embedders an operator serves (``embedders``: names such as ``minilm``).

LangChain's and LlamaIndex's ``OpenAIEmbeddings``, Open WebUI's OpenAI embedding engine and the openai SDK call it
with ``model`` set to one of those names. Only names the operator lists are served, and only as names: an
embedder reference's argument (``llama-cpp:/a/file.gguf``, ``openai:MODEL``) would let a caller load a file of the
server's or spend its own upstream key. The vectors are the embedder's own (L2-normalised), computed off the
event loop; ``encoding_format: "base64"`` (the openai SDK's default) sends them as little-endian float32 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.openai_schemas import OpenAIErrorBody
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/v1", tags=["openai"], responses=responses(401, 422, model=OpenAIErrorBody),
                   route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use"))]
State = Annotated[ServerState, Depends(state_of)]
MAX_INPUTS = 2048  # OpenAI's
IGNORED_FIELDS = ("user",)  # who the end user is: changes nothing in the vectors
# Embedding is CPU work of seconds per large request: on asyncio's default pool (6 threads on 2 cores) eight at
# once took the threads the store's calls run on, and chat completions waited up to 45 s meanwhile. One thread of
# its own: requests take turns, the default pool stays free.
_EMBEDDING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halguru-embed")
# Requests take turns on that thread through the model gate, as runs of a model do (one at a time, the queue's
# places fair between clients): past the queue (``queue_size``) or a client's share of it, a 503 to send again
# later. Unbounded, a burst of large requests kept their texts in memory for minutes; bounded but first come first
# served (16 for everyone), one key's burst had every other caller refused or waiting behind all of it.
EMBEDDINGS = "embeddings"  # the gate's name for the embedding thread


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # a field not typed here and not in IGNORED_FIELDS is a 400 naming it
    model: str = Field(min_length=1, max_length=200, description="an embedder the server serves (`embedders`)")
    input: str | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        description=f"a text, or up to {MAX_INPUTS} (token arrays are not taken: send text)")
    encoding_format: Literal["float", "base64"] = Field(default="float", description="base64: little-endian "
                                                                                      "float32 bytes")
    dimensions: StrictInt | None = Field(default=None, gt=0, description="the embedder's own size only")

    def texts(self, limit: int) -> list[str]:
        """The inputs as a list; 400 for an unknown field, an empty text or one past ``limit`` characters."""
        unknown = [k for k, v in (self.model_extra or {}).items() if k not in IGNORED_FIELDS and v is not None]
        if unknown:
            raise ApiError(400, f"{unknown[0]}: not supported by this endpoint; leave it out", param=unknown[0])
        texts = [self.input] if isinstance(self.input, str) else self.input
        for i, text in enumerate(texts):
            where = "input" if isinstance(self.input, str) else f"input.{i}"
            if not text:
                raise ApiError(400, f"{where}: an empty text has no embedding; leave it out", param=where)
            if len(text) > limit:
                raise ApiError(413, f"{where}: {len(text)} characters; the limit is {limit} "
                                    "(HALGURU_SERVE_MAX_INPUT_CHARS)", "message_too_long", param=where)
        return texts


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="the vector, or its float32 bytes in base64")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(description="estimated: a token per 4 characters")
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _encoded(vector: list[float], form: str) -> list[float] | str:
    if form == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return [float(x) for x in vector]


def _embed(name: str, texts: list[str]) -> list[list[float]]:
    from halguru.rag.embedders import get_embedder  # loads the embedder once per process, on first use

    embedder: Any = get_embedder(name)
    return [list(v) for v in embedder.embed(texts)]


@router.post("/embeddings", response_model=EmbeddingList, responses=responses(400, 403, 404, 413, 502, 503,
                                                                               model=OpenAIErrorBody))
async def embeddings(body: EmbeddingRequest, state: State, caller: Caller) -> EmbeddingList:
    """Vectors of the texts in ``input`` from the embedder named by ``model``."""
    served = state.settings.embedders
    if body.model not in served:
        offered = f"this server embeds with {', '.join(served)}" if served else \
            "this server serves no embedder (HALGURU_SERVE_EMBEDDERS, e.g. '[\"minilm\"]')"
        raise ApiError(404, f"no embedding model {body.model[:200]!r}; {offered}", "model_not_found", param="model")
    texts = body.texts(state.settings.max_input_chars)
    async with state.gate.reserve(EMBEDDINGS, caller.client, 1, "requests"):  # QueueFull: 503 queue_full
        try:
            vectors = await asyncio.get_running_loop().run_in_executor(_EMBEDDING, _embed, body.model, texts)
        except Exception as exc:  # an embedder that cannot load or run: the operator's to fix, said in one line
            from halguru.errors import exception_line

            raise ApiError(502, f"embedder {body.model} failed: {exception_line(exc)}", "embedder_failed") from None
    if body.dimensions is not None and vectors and body.dimensions != len(vectors[0]):
        raise ApiError(400, f"dimensions: {body.model} gives {len(vectors[0])}; leave it out or send that",
                       param="dimensions")
    tokens = sum(max(1, len(t) // 4) for t in texts)
    return EmbeddingList(data=[Embedding(index=i, embedding=_encoded(v, body.encoding_format))
                               for i, v in enumerate(vectors)],
                         model=body.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
