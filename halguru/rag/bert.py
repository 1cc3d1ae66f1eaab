"""A BERT-family sentence encoder (mean pooling), shared by the ``minilm`` and ``e5`` embedders: no torch. The
embeddings are read in NumPy; the layers run in ONNX Runtime (minilm) or NumPy (e5's dequantised weights).

Texts are encoded in batches sorted by length (little padding is computed), one batch per core, each with a
single-threaded BLAS: NumPy lets go of the GIL while it computes, and BLAS's own threads spin on a busy machine
(3-7x slower there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

Layer = tuple[Any, ...]  # qkv, qkv bias, out, out bias, norm gain/bias, up, up bias, down, down bias, norm gain/bias


def layer(qkv: Any, qkv_bias: Any, out: Any, out_bias: Any, norm1: tuple[Any, Any], up: Any, up_bias: Any,
          down: Any, down_bias: Any, norm2: tuple[Any, Any]) -> Layer:
    """One layer; each matrix is in x out, query, key and value side by side in ``qkv``. A matrix may be the
    transposed view of a weight mapped from its file (PyTorch stores out x in): BLAS reads it transposed as fast as
    a contiguous copy (measured with one BLAS thread, 16 and 2,048 rows), and a view costs no load time and no
    memory beyond the page cache that processes share."""
    return (qkv, qkv_bias, out, out_bias, *norm1, up, up_bias, down, down_bias, *norm2)


class NumpyLayers:
    """``layers(hidden, mask)`` for ``BertEncoder``: the layers' forward pass in NumPy (the ``e5`` embedder's
    dequantised weights; minilm runs its layers in ONNX Runtime, ``halguru.rag.onnx_layers``)."""

    def __init__(self, layers: list[Layer], heads: int, eps: float):
        import numpy as np

        self.layers, self.heads, self.eps = layers, heads, np.float32(eps)

    def __call__(self, hidden: Any, mask: Any) -> Any:
        import numpy as np

        batch, length, width = hidden.shape
        x = hidden.reshape(batch * length, width)
        head = width // self.heads
        masked = ((1.0 - mask) * -1e9).astype(np.float32)[:, None, None, :]
        scale = np.float32(1 / np.sqrt(head))
        for qkv_w, qkv_b, out_w, out_b, g1, b1, up_w, up_b, down_w, down_b, g2, b2 in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(batch, length, 3, self.heads, head)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = (q @ k) * scale + masked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, width)
            x = layer_norm(x + attended @ out_w + out_b, g1, b1, self.eps)
            h = x @ up_w + up_b
            h = 0.5 * h * (1 + np.tanh(np.float32(0.7978845608) * (h + np.float32(0.044715) * h * h * h)))  # GELU
            x = layer_norm(x + h @ down_w + down_b, g2, b2, self.eps)
        return x.reshape(batch, length, width)


def layer_norm(x: Any, gain: Any, bias: Any, eps: Any) -> Any:
    import numpy as np

    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * gain + bias


class BertEncoder:
    """Mean-pooled BERT over token ids: the embeddings in NumPy, then ``layers(hidden, mask)`` (``NumpyLayers``
    or ``halguru.rag.onnx_layers.OnnxLayers``). ``words`` is indexed by an id array (a NumPy array, or any object
    that gives the rows of the ids it is asked for: the e5 weights dequantise only those)."""

    BATCH = 16  # texts per forward pass

    def __init__(self, words: Any, positions: Any, token_type: Any, norm: tuple[Any, Any], eps: float,
                 layers: Callable[[Any, Any], Any]):
        import numpy as np
        from threadpoolctl import ThreadpoolController

        self.words, self.positions, self.token_type, self.norm0 = words, positions, token_type, norm
        self.eps, self.layers = np.float32(eps), layers
        self.dimension = int(positions.shape[1])
        threads = os.environ.get("HALGURU_EMBED_THREADS")
        self.threads = max(1, int(threads) if threads and threads.isdigit() else (os.cpu_count() or 1))
        self.blas = ThreadpoolController()  # found once: each limit() is then cheap
        self.lock = threading.Lock()  # BLAS limits are process-wide: one encode call at a time

    def _forward(self, ids: Any, mask: Any) -> Any:
        length = ids.shape[1]
        x = layer_norm(self.words[ids] + self.positions[:length] + self.token_type, *self.norm0, self.eps)
        x = self.layers(x, mask)
        return (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)  # mean over the real tokens

    def encode(self, ids: list[list[int]]) -> Any:
        """One mean-pooled vector per id list (not normalised), as a float32 array."""
        import numpy as np

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)

        def run(group: list[int]) -> None:
            length = max(len(ids[i]) for i in group)
            tokens = np.zeros((len(group), length), dtype=np.int64)
            mask = np.zeros((len(group), length), dtype=np.float32)
            for row, i in enumerate(group):
                tokens[row, :len(ids[i])] = ids[i]
                mask[row, :len(ids[i])] = 1.0
            out[group] = self._forward(tokens, mask)

        groups = [order[start:start + self.BATCH] for start in range(0, len(order), self.BATCH)]
        with self.lock, self.blas.limit(limits=1, user_api="blas"):
            if len(groups) == 1 or self.threads == 1:
                for group in groups:
                    run(group)
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(self.threads, len(groups))) as pool:
                    list(pool.map(run, groups))
        return out
