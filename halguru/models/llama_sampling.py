"""llama.cpp sampler chains for the batching engine (``llama_batch``), and calls that keep the GIL."""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from halguru.errors import ModelError

PENALTY_LAST_N = 64  # the repetition penalty looks at this many of the last sampled tokens
# The truncations llama-cpp-python's create_completion applies by default, used while a request leaves them unset.
TOP_K = 40
MIN_P = 0.05
LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's dist sampler draws a random seed for this one


def llama_seed(seed: int) -> int:
    """A request's seed (an int64) as llama.cpp's uint32, never the value it reads as "random": ctypes kept the
    low 32 bits, so seed -1 and 4294967295 sampled differently on every run."""
    return seed % LLAMA_DEFAULT_SEED


@dataclass
class Sampler:
    """A llama.cpp sampler chain, and the penalties kept here.

    llama.cpp's penalties sampler looks every vocabulary entry up in a hash map at every token (~0.3 ms for a
    49k vocabulary on these cores: three quarters of the engine's own time between batched steps).
    ``penalize`` changes only the logits of the tokens in ``recent``, by the same float arithmetic (the
    repetition penalty, then OpenAI's frequency and presence penalties), so the chain samples what it sampled
    with llama.cpp's penalties in front."""

    chain: Any
    penalty: float
    frequency: float = 0.0
    presence: float = 0.0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=PENALTY_LAST_N))

    def penalize(self, logits: Any) -> None:
        """Apply the penalties to ``logits`` (float32, in place) for the recently sampled tokens."""
        if (self.penalty == 1.0 and not self.frequency and not self.presence) or not self.recent:
            return
        import numpy as np

        ids, counts = np.unique(np.fromiter(self.recent, dtype=np.int32, count=len(self.recent)),
                                return_counts=True)
        values = logits[ids]
        if self.penalty != 1.0:
            penalty = np.float32(self.penalty)
            values = np.where(values <= 0, values * penalty, values / penalty)
        if self.frequency or self.presence:
            # one subtraction, of count * frequency + presence: llama.cpp's order of float operations
            values = values - (counts.astype(np.float32) * np.float32(self.frequency) + np.float32(self.presence))
        logits[ids] = values


def sampler_chain(vocab: Any, *, temperature: float, top_p: float, seed: int, repeat_penalty: float,
                  grammar: str | None = None, frequency_penalty: float = 0.0,
                  presence_penalty: float = 0.0, top_k: int = TOP_K, min_p: float = MIN_P) -> Sampler:
    """A sampler as llama-cpp-python's ``create_completion`` builds its chain (same results); free it with
    ``free_sampler``. ``top_k`` 0 and ``min_p`` 0 keep every token (llama.cpp's samplers do nothing then).
    Raises ModelError for a grammar llama.cpp rejects."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if grammar is not None:
        g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not g:
            llama_cpp.llama_sampler_free(chain)
            raise ModelError("llama.cpp rejected a generated grammar (see the log for the rule)")
        add(g)
    if temperature == 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        add(llama_cpp.llama_sampler_init_top_k(top_k))
        add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(temperature))
        add(llama_cpp.llama_sampler_init_dist(llama_seed(seed)))
    return Sampler(chain, repeat_penalty, frequency_penalty, presence_penalty)


def free_sampler(sampler: Sampler) -> None:
    import llama_cpp

    llama_cpp.llama_sampler_free(sampler.chain)


def keeping_gil(name: str) -> Any:
    """llama.cpp's function ``name`` called without releasing the GIL (ctypes.PyDLL), for calls far shorter
    than the wait to take the GIL back; same signature as llama-cpp-python's binding."""
    import llama_cpp.llama_cpp as bindings

    lib = bindings._lib
    function = getattr(ctypes.PyDLL(lib._name, handle=lib._handle), name)
    binding = getattr(bindings, name)
    function.argtypes, function.restype = binding.argtypes, binding.restype
    return function
