"""Built-in embedders, registered through the same hook as third-party plugins."""

from __future__ import annotations

from typing import Any

from halguru.plugins.hookspecs import hookimpl


@hookimpl
def register_embedders(register: Any) -> None:
    from halguru.rag.e5 import E5Embedder
    from halguru.rag.embedders import (
        LlamaCppEmbedder,
        MiniLMEmbedder,
        OpenAIEmbedder,
        SentenceTransformersEmbedder,
        WordLlamaEmbedder,
    )

    register("wordllama", WordLlamaEmbedder)
    register("llama-cpp", LlamaCppEmbedder)
    register("e5", E5Embedder)
    register("minilm", MiniLMEmbedder)
    register("sentence-transformers", SentenceTransformersEmbedder)
    register("openai", OpenAIEmbedder)
