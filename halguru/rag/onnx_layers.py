"""A transformer encoder's layers as an ONNX graph, run by ONNX Runtime: minilm's (float32) and the lead model's
(mpnet, 8-bit) are built here from their safetensors weights, once, into the user's model cache.

Only the layers are in the graph: the token embeddings stay in NumPy, mapped from the weights' file and read only
for the tokens used. ONNX Runtime runs a layer in a few fused kernels where NumPy makes a pass over memory per
operation: all-MiniLM-L6-v2 embeds 128-token chunks 1.8x as fast on one core (62 against 34 a second) with the
same vectors (cosine 0.999998 to the NumPy pass).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayerNames:
    """Where a model family keeps each weight of layer i (``encoder.layer.{i}.`` + name + ``.weight``/``.bias``)."""

    q: str
    k: str
    v: str
    out: str
    norm1: str
    up: str
    down: str
    norm2: str


BERT = LayerNames("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")
MPNET = LayerNames("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
                   "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


def cache_root() -> Path:
    """Where prepared models live: ``HALGURU_MODEL_CACHE``, else the user's cache folder (not HALGURU_HOME: a
    model derived from an installed package is shared by every home, like pip's cache)."""
    explicit = os.environ.get("HALGURU_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "halguru" / "models"


def file_key(path: Path) -> str:
    """A short name for a weights file's content, read cheaply: its size and its first and last MiB (the same
    weights copied elsewhere, into a container image say, find the same prepared model)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        digest.update(str(size).encode())
        for start in (0, max(0, size - (1 << 20))):
            file.seek(start)
            digest.update(file.read(1 << 20))
    return digest.hexdigest()[:12]


def layers_graph(w: dict[str, Any], names: LayerNames, *, layers: int, heads: int, width: int, eps: float,
                 bias_heads: int, name: str) -> Any:
    """The encoder's layers in float32 (post-norm, exact GELU): hidden states [batch, length, width] and the
    attention bias [batch, bias_heads or 1, length or 1, length] (padding, and relative positions where the model
    has them) in, hidden states out. ``w`` maps ``encoder.layer.{i}.{name}.weight`` (out x in) and ``.bias``."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    weights: list[Any] = []

    def const(tag: str, value: Any) -> str:
        weights.append(numpy_helper.from_array(np.array(value, order="C"), tag))
        return tag

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    head = width // heads
    split_shape = const("split_shape", np.array([0, 0, heads, head], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, width], dtype=np.int64))
    scale = const("scale", np.array(1 / np.sqrt(head), dtype=np.float32))
    half, one = const("half", np.array(0.5, dtype=np.float32)), const("one", np.array(1.0, dtype=np.float32))
    root2 = const("root2", np.array(np.sqrt(2.0), dtype=np.float32))

    def linear(value: str, weight: str, tag: str) -> str:
        matrix = const(f"{tag}.w", w[f"{weight}.weight"].T.astype(np.float32))
        product = node("MatMul", [value, matrix], f"{tag}.mm")
        return node("Add", [product, const(f"{tag}.b", w[f"{weight}.bias"].astype(np.float32))], f"{tag}.out")

    def norm(value: str, weight: str, tag: str) -> str:
        gain, bias = (const(f"{tag}.{part}", w[f"{weight}.{kind}"].astype(np.float32))
                      for part, kind in (("g", "weight"), ("beta", "bias")))
        return node("LayerNormalization", [value, gain, bias], tag, axis=-1, epsilon=eps)

    def split(value: str, tag: str, order: list[int]) -> str:
        return node("Transpose", [node("Reshape", [value, split_shape], f"{tag}.r")], f"{tag}.t", perm=order)

    x = "hidden"
    for i in range(layers):
        at = f"encoder.layer.{i}."
        q = split(linear(x, at + names.q, f"l{i}.q"), f"l{i}.qh", [0, 2, 1, 3])
        k = split(linear(x, at + names.k, f"l{i}.k"), f"l{i}.kh", [0, 2, 3, 1])
        v = split(linear(x, at + names.v, f"l{i}.v"), f"l{i}.vh", [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], f"l{i}.qk"), scale], f"l{i}.scaled"), "bias"],
                      f"l{i}.scores")
        attended = node("MatMul", [node("Softmax", [scores], f"l{i}.p", axis=-1), v], f"l{i}.pv")
        merged = node("Reshape", [node("Transpose", [attended], f"l{i}.pvt", perm=[0, 2, 1, 3]), merge_shape],
                      f"l{i}.merged")
        x = norm(node("Add", [linear(merged, at + names.out, f"l{i}.o"), x], f"l{i}.res1"), at + names.norm1,
                 f"l{i}.n1")
        h = linear(x, at + names.up, f"l{i}.up")
        gelu = node("Mul", [node("Mul", [h, half], f"l{i}.h2"),
                            node("Add", [node("Erf", [node("Div", [h, root2], f"l{i}.hs")], f"l{i}.erf"), one],
                                 f"l{i}.erf1")], f"l{i}.gelu")  # exact GELU, as the models were trained
        x = norm(node("Add", [linear(gelu, at + names.down, f"l{i}.down"), x], f"l{i}.res2"), at + names.norm2,
                 f"l{i}.n2")
    nodes.append(helper.make_node("Identity", [x], ["out"], name="out"))
    bias_shape: list[str | int] = ["batch", heads, "length", "length"] if bias_heads > 1 else ["batch", 1, 1, "length"]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", width]),
                      helper.make_tensor_value_info("bias", TensorProto.FLOAT, bias_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "length", width])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` when the block ends without error: a killed or
    concurrent build never leaves a half-written model (a process that finished first keeps its own, the same)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        yield work
        work.chmod(0o755)  # a temporary folder is private: the model is for every user of this cache
        with contextlib.suppress(OSError):
            work.rename(target)


def prepared(folder_name: str, build: Callable[[], Any]) -> str | bytes:
    """The model ``build`` makes (an ONNX ModelProto), saved once as ``folder_name/model.onnx`` in the cache; its
    path, or its bytes where the cache cannot be written (built again in each process then)."""
    target = cache_root() / folder_name
    if (target / "model.onnx").is_file():
        return str(target / "model.onnx")
    data: bytes = build().SerializeToString()
    try:
        with building(target) as work:
            (work / "model.onnx").write_bytes(data)
    except OSError:
        return data
    return str(target / "model.onnx") if (target / "model.onnx").is_file() else data


def first_line(exc: Exception) -> str:
    """What a runtime's exception says, in one line (ONNX Runtime and tokenizers raise long texts of their own)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def session(model: str | bytes, threads: int) -> Any:
    """An ONNX Runtime session on the CPU with ``threads`` threads, whose idle threads sleep instead of spinning
    (a search runs its full-text query and the other model beside it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class OnnxLayers:
    """``layers(hidden, mask)`` for ``halguru.rag.bert.BertEncoder``, run by ONNX Runtime on one thread per call
    (the encoder runs batches side by side). The session starts at the first call of more than ``small`` texts:
    until then smaller ones (a question) run in ``fallback`` (NumPy: cosine 0.99999 to the session's vectors), as
    starting a session (~40-140 ms) would be most of what a one-shot ``halguru kb search`` waits for the model. A
    process that asks a second small call is long-lived (serve, chat, an agent's searches): the session then starts
    on a background thread, and the calls after it run there (a question in 5.7 ms against NumPy's 14.5 ms on a slow
    2-core machine)."""

    def __init__(self, model: Callable[[], str | bytes], small: int = 0,
                 fallback: Callable[[Any, Any], Any] | None = None):
        self.model, self.small, self.fallback = model, small, fallback
        self.session: Any = None
        self.lock = threading.Lock()
        self.small_calls = 0

    def start(self) -> Any:
        """The session, started (and the model prepared) if it was not."""
        with self.lock:
            if self.session is None:
                from halguru.rag.errors import KnowledgeError

                model = self.model()
                try:
                    self.session = session(model, threads=1)
                except Exception as exc:  # ONNX Runtime raises its own types: a damaged cache
                    where = f" in {Path(model).parent}; delete that folder and it is built again" \
                        if isinstance(model, str) else ""
                    raise KnowledgeError(f"the embedder's ONNX model cannot load ({first_line(exc)}){where}") \
                        from None
            return self.session

    def _start_quietly(self) -> None:
        """``start`` for a background thread: a model that cannot load says so at the next batch instead."""
        with contextlib.suppress(Exception):
            self.start()

    def __call__(self, hidden: Any, mask: Any) -> Any:
        import numpy as np

        if self.fallback is not None and hidden.shape[0] <= self.small and self.session is None:
            self.small_calls += 1
            if self.small_calls == 2:  # not a daemon: a process that exits meanwhile waits for it (<0.2 s)
                # rather than tear ONNX Runtime down under a thread still inside it
                threading.Thread(target=self._start_quietly, name="halguru-onnx-start").start()
            return self.fallback(hidden, mask)
        bias = np.ascontiguousarray(((1.0 - mask) * -1e9)[:, None, None, :], dtype=np.float32)
        (out,) = self.start().run(["out"], {"hidden": np.ascontiguousarray(hidden, dtype=np.float32),
                                               "bias": bias})
        return out
