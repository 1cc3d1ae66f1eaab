"""One llama.cpp model and its context of ``slots`` sequences, as the batching engine uses it.

Loading (GGUF checks, context parameters), tokens (tokenizing, their text, end of generation), sampling
and the context's thread counts; the engine (``llama_batch.LlamaEngine``) adds the scheduling. Every ctypes
call releases the GIL, and taking it back from a busy event loop can cost milliseconds: what a generated
token needs is cached, or called keeping the GIL.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path
from typing import Any

from halguru.errors import ModelError
from halguru.models.llama_sampling import MIN_P, TOP_K, Sampler, free_sampler, keeping_gil, sampler_chain

N_BATCH = 512  # tokens per llama_decode at most (a prompt alone is prefilled this many at a time)


class LlamaContext:
    """A GGUF model, loaded on first use, with one context of ``slots`` sequences of ``slot_ctx`` tokens each."""

    def __init__(self, name: str, path: Path, slots: int, slot_ctx: int, n_threads: int | None):
        self.name, self.path, self.slots, self.slot_ctx = name, path, slots, slot_ctx
        self.n_threads = n_threads
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.n_vocab = 0
        self._batch: Any = None
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}  # bounded by the vocabulary
        self._eog: dict[int, bool] = {}
        self._threads = (1, 1)  # (one token, a batch), set at load
        self._context_threads = (0, 0)  # what the context uses now: (one-token steps, batches)
        self._sample_keeping_gil: Any = None

    def load(self) -> None:
        """Load the model and create its context (once; on the worker thread, at the first generation)."""
        if self.ctx is not None:
            return
        if not self.path.is_file():
            raise ModelError(f"GGUF model file not found: {self.path} (model {self.name}); "
                             "check the path or register another with `halguru models add NAME --gguf PATH`")
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load chatter
        llama_cpp.llama_backend_init()
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), llama_cpp.llama_model_default_params())
        if not model:
            from halguru.models.gguf import check_gguf

            check_gguf(self.path)  # a truncated or malformed file: say which (llama.cpp only says it failed)
            raise ModelError(f"cannot load {self.path} as a GGUF model")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.slots * self.slot_ctx
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = self.slots
        # One KV stream per sequence: a token attends only to its own sequence's cells (a shared, unified
        # buffer makes every token of a batch scan every slot's cells).
        params.kv_unified = False
        cpus = os.cpu_count() or 1
        # llama-cpp-python's defaults (half the cores for one token, all for a prompt), as before batching
        self._threads = (self.n_threads or max(cpus // 2, 1), self.n_threads or cpus)
        params.n_threads, params.n_threads_batch = self._threads
        params.no_perf = True
        # Flash attention: 10-15% more tokens/s on 2 cores at 1 to 4 streams (llama-server's default, "auto",
        # turns it on for the CPU too). A stream's text is the same alone or batched, as before; it may differ
        # from llama-cpp-python's Llama class, which leaves it off (the kernels round differently).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ModelError(f"llama.cpp could not create a context of {self.slots} × {self.slot_ctx} tokens "
                             f"for {self.path.name}; lower HALGURU_LLAMA_SLOTS or HALGURU_LLAMA_N_CTX")
        self.model, self.ctx = model, ctx
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)

    def metadata(self, key: str) -> str | None:
        import llama_cpp

        buf = ctypes.create_string_buffer(1 << 16)
        n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        import llama_cpp

        data = text.encode("utf-8")
        size = len(data) + 8
        out = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, size, add_bos, special)
        if n < 0:  # never more tokens than bytes (+ BOS), but llama.cpp says how many it needs
            size = -n
            out = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), out, size, add_bos, special)
        return list(out[:n])

    # Cached per token: every ctypes call releases the GIL, and taking it back from a busy event loop can cost
    # milliseconds per call; a generated token needs only two (llama_decode and its sampling).
    def piece(self, token: int) -> bytes:
        """The bytes of one token as text (control tokens render as nothing)."""
        import llama_cpp

        cached = self._pieces.get(token)
        if cached is None:
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
            cached = self._pieces[token] = self._piece_buf.raw[:n] if n > 0 else b""
        return cached

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return eog

    def sampler(self, *, temperature: float, top_p: float, seed: int, repeat_penalty: float,
                grammar: str | None = None, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                top_k: int = TOP_K, min_p: float = MIN_P) -> Sampler:
        """A sampler for this model (see ``llama_sampling.sampler_chain``); free it with ``free_sampler``."""
        return sampler_chain(self.vocab, temperature=temperature, top_p=top_p, seed=seed,
                             repeat_penalty=repeat_penalty, grammar=grammar, frequency_penalty=frequency_penalty,
                             presence_penalty=presence_penalty, top_k=top_k, min_p=min_p)

    free_sampler = staticmethod(free_sampler)

    def sample(self, sampler: Sampler, index: int) -> int:
        if self._sample_keeping_gil is None:
            self._sample_keeping_gil = keeping_gil("llama_sampler_sample")
        sampler.penalize(self.logits(index))
        token = int(self._sample_keeping_gil(sampler.chain, self.ctx, index))
        sampler.recent.append(token)
        return token

    def logits(self, index: int) -> Any:
        """The logits at batch ``index`` as a numpy array (valid until the next step)."""
        import llama_cpp
        import numpy as np

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,))

    def use_threads(self, threads: int, one_token: bool) -> None:
        """Run the next llama_decode on ``threads`` (llama.cpp keeps a count for one-token steps, another for
        batches): set only when it changes."""
        import llama_cpp

        one, batch = self._context_threads
        wanted = (threads, batch or self._threads[1]) if one_token else (one or self._threads[0], threads)
        if wanted != self._context_threads:
            llama_cpp.llama_set_n_threads(self.ctx, *wanted)
            self._context_threads = wanted
