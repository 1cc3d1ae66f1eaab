"""llama.cpp sampler chains for the batching engine (``llama_batch``), and calls that keep the GIL."""

from __future__ import annotations

import ctypes
from typing import Any

from halguru.errors import ModelError


def sampler_chain(vocab: Any, n_vocab: int, *, temperature: float, top_p: float, seed: int,
                  repeat_penalty: float, grammar: str | None = None) -> Any:
    """A sampler chain as llama-cpp-python's ``create_completion`` builds it (same results); free it with
    ``free_sampler``. Raises ModelError for a grammar llama.cpp rejects."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    add(llama_cpp.llama_sampler_init_penalties(n_vocab, 64, repeat_penalty, 0.0, 0.0))
    if grammar is not None:
        g = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not g:
            llama_cpp.llama_sampler_free(chain)
            raise ModelError("llama.cpp rejected a generated grammar (see the log for the rule)")
        add(g)
    if temperature == 0:
        add(llama_cpp.llama_sampler_init_greedy())
    else:
        add(llama_cpp.llama_sampler_init_top_k(40))
        add(llama_cpp.llama_sampler_init_typical(1.0, 1))
        add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(0.05, 1))
        add(llama_cpp.llama_sampler_init_temp(temperature))
        add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


def free_sampler(chain: Any) -> None:
    import llama_cpp

    llama_cpp.llama_sampler_free(chain)


def keeping_gil(name: str) -> Any:
    """llama.cpp's function ``name`` called without releasing the GIL (ctypes.PyDLL), for calls far shorter
    than the wait to take the GIL back; same signature as llama-cpp-python's binding."""
    import llama_cpp.llama_cpp as bindings

    lib = bindings._lib
    function = getattr(ctypes.PyDLL(lib._name, handle=lib._handle), name)
    binding = getattr(bindings, name)
    function.argtypes, function.restype = binding.argtypes, binding.restype
    return function
