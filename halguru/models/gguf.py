"""GGUF files read without loading them: is the file whole (``check_gguf``), and the few header values
that size a llama.cpp context (``gguf_numbers``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from halguru.errors import ModelError

# ggml tensor type -> (elements per block, bytes per block), as in ggml-common.h / gguf-py's GGML_QUANT_SIZES.
_QK_K = 256
_GGML_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (_QK_K, 84), 11: (_QK_K, 110), 12: (_QK_K, 144), 13: (_QK_K, 176), 14: (_QK_K, 210), 15: (_QK_K, 292),
    16: (_QK_K, 66), 17: (_QK_K, 74), 18: (_QK_K, 98), 19: (_QK_K, 50), 20: (32, 18), 21: (_QK_K, 110),
    22: (_QK_K, 82), 23: (_QK_K, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (_QK_K, 56), 30: (1, 2), 34: (_QK_K, 54), 35: (_QK_K, 66), 39: (32, 17),
}
# GGUF metadata value types with a fixed size (the others: 8 string, 9 array).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_CHUNK = 1 << 20  # bytes of a string array read at a time


class _GGUFReader:
    """Reads a GGUF header sequentially; running past the end of the file is a ModelError."""

    def __init__(self, fh: Any, path: Path, size: int):
        self.fh, self.path, self.size = fh, path, size

    def truncated(self) -> ModelError:
        return ModelError(f"{self.path} is truncated: the file ends at byte {self.size}, inside its GGUF header "
                          "(download it again)")

    def read(self, fmt: str) -> Any:
        import struct

        want = struct.calcsize("<" + fmt)
        data = self.fh.read(want)
        if len(data) < want:
            raise self.truncated()
        return struct.unpack("<" + fmt, data)[0]

    def skip_strings(self, count: int) -> None:
        """Read past ``count`` strings (a vocabulary: tens of thousands) from a buffer, not one read each."""
        import struct

        length_at = struct.Struct("<Q").unpack_from
        fh, buf, off = self.fh, b"", 0
        for _ in range(count):
            if off + 8 > len(buf):
                if off > len(buf):  # the last string ran past the buffer
                    fh.seek(off - len(buf), 1)
                    buf, off = b"", 0
                buf = buf[off:] + fh.read(_CHUNK)
                off = 0
                if len(buf) < 8:
                    raise self.truncated()
            (length,) = length_at(buf, off)
            if length > self.size:
                raise ModelError(f"{self.path} is not a valid GGUF file (a string of {length} bytes in its header)")
            off += 8 + length
        fh.seek(off - len(buf), 1)
        if fh.tell() > self.size:
            raise self.truncated()

    def string(self) -> str:
        length = self.read("Q")
        if length > self.size:
            raise ModelError(f"{self.path} is not a valid GGUF file (a string of {length} bytes in its header)")
        data = self.fh.read(length)
        if len(data) < length:
            raise self.truncated()
        return data.decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            return self.read(_GGUF_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.read("I"), self.read("Q")
            if count > self.size:
                raise ModelError(f"{self.path} is not a valid GGUF file (an array of {count} items in its header)")
            if item == 8:
                self.skip_strings(count)
            elif item in _GGUF_SCALARS:  # numbers (token types, scores): one seek
                import struct

                self.fh.seek(count * struct.calcsize("<" + _GGUF_SCALARS[item]), 1)
                if self.fh.tell() > self.size:
                    raise self.truncated()
            else:
                for _ in range(count):
                    self.value(item)
            return None
        raise ModelError(f"{self.path} is not a valid GGUF file (unknown metadata type {kind})")


def _open(path: Path) -> tuple[int, Any]:
    try:
        return path.stat().st_size, path.open("rb")
    except FileNotFoundError:
        raise ModelError(f"GGUF model file not found: {path}; check the path (a relative path in agent.yaml "
                         "is relative to its folder)") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None


def _header(r: _GGUFReader, stop: str | None = None) -> tuple[int, dict[str, Any]]:
    """The tensor count and the metadata (arrays read past, as None), up to the first key starting
    with ``stop`` if given."""
    if r.fh.read(4) != b"GGUF":
        raise ModelError(f"{r.path} is not a GGUF model file (it does not start with the GGUF magic)")
    version = r.read("I")
    if version not in (2, 3):
        raise ModelError(f"{r.path}: GGUF version {version} is not supported (llama.cpp reads versions 2 and 3)")
    n_tensors, n_meta = r.read("Q"), r.read("Q")
    meta: dict[str, Any] = {}
    for _ in range(n_meta):
        key = r.string()
        if stop is not None and key.startswith(stop):
            break
        meta[key] = r.value(r.read("I"))
    return int(n_tensors), meta


def gguf_metadata(path: Path, stop: str | None = None) -> dict[str, Any]:
    """The metadata of a GGUF file's header (numbers and strings; arrays as None), without loading it;
    up to the first key starting with ``stop`` if given."""
    size, fh = _open(path)
    with fh:
        return _header(_GGUFReader(fh, path, size), stop)[1]


def kv_bytes_per_token(path: Path) -> int | None:
    """Bytes of f16 KV cache one token takes in this model (every layer, K and V), from its header; None
    when the header lacks the sizes (an architecture named otherwise)."""
    # The model's sizes come before the tokenizer's vocabulary (tens of thousands of strings to read past).
    meta = gguf_metadata(path, stop="tokenizer.")
    arch = meta.get("general.architecture")

    def number(key: str, default: int | None = None) -> int | None:
        value = meta.get(f"{arch}.{key}", default)
        return value if isinstance(value, int) and value > 0 else None

    layers, embd, heads = number("block_count"), number("embedding_length"), number("attention.head_count")
    if layers is None or embd is None or heads is None:
        return None
    heads_kv = number("attention.head_count_kv", heads) or heads
    key_length = number("attention.key_length", embd // heads) or embd // heads
    value_length = number("attention.value_length", embd // heads) or embd // heads
    return layers * heads_kv * (key_length + value_length) * 2


def check_gguf(path: Path) -> int:
    """Check that ``path`` is a whole GGUF file without loading it: the header, the tensor table and a file
    long enough for the tensor data the table declares. Returns the number of tensors."""
    size, fh = _open(path)
    with fh:
        r = _GGUFReader(fh, path, size)
        n_tensors, meta = _header(r)
        alignment = meta.get("general.alignment", 32)
        alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
        end = 0
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.read("Q") for _ in range(r.read("I"))]
            kind, offset = r.read("I"), r.read("Q")
            block, block_bytes = _GGML_SIZES.get(kind, (1, 0))  # a type unknown here: its offset is checked
            elements = 1
            for d in dims:
                elements *= d
            end = max(end, offset + -(-elements // block) * block_bytes)
            if not name:
                raise ModelError(f"{path} is not a valid GGUF file (a tensor without a name)")
        data_start = -(-fh.tell() // alignment) * alignment
    if n_tensors and data_start + end > size:
        raise ModelError(f"{path} is truncated: its {n_tensors} tensors need {data_start + end} bytes, the file has "
                         f"{size} (download it again)")
    return int(n_tensors)
