"""The KV cache of a batching context's sequences: one per slot, kept warm between a conversation's turns.

``Slot.tokens`` is exactly what the KV cache holds for the slot's sequence (positions 0..n-1); every change
to a sequence goes through ``SequenceCache`` so the two stay equal. A warm sequence whose slot is taken by
another conversation is saved (``llama_state_seq_get_data``) in an LRU of ``saved_states`` and restored when
that conversation comes back. Worker thread only (see ``llama_batch``).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from halguru.models.llama_jobs import Job, Program

COPY_PREFIX_MIN = 64  # copying another slot's whole sequence to reuse its prefix pays from this many tokens


@dataclass
class Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for this sequence
    key: str | None = None
    job: Job | None = None
    program: Program | None = None
    pending: list[int] = field(default_factory=list)  # to decode before the program resumes
    feeding: bool = False  # pending holds a sampled token (generation), not a prompt
    started: float = 0.0
    last_used: float = 0.0


@dataclass
class _Saved:
    data: Any
    size: int
    tokens: list[int]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class SequenceCache:
    """The slots' sequences in one llama.cpp context (``ctx``, set once the model is loaded), and the saved
    states of conversations whose slot went to another."""

    def __init__(self, slots: list[Slot], saved_states: int):
        self.ctx: Any = None
        self.slots, self.saved_states = slots, saved_states
        self._saved: OrderedDict[str, _Saved] = OrderedDict()

    def _memory(self) -> Any:
        import llama_cpp

        return llama_cpp.llama_get_memory(self.ctx)

    def clear(self, slot: Slot) -> None:
        """Empty the slot's sequence."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq, -1, -1)
        slot.tokens = []

    def truncate(self, slot: Slot, n: int) -> None:
        import llama_cpp

        if n < len(slot.tokens):
            llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq, n, -1)
            del slot.tokens[n:]

    def save(self, slot: Slot) -> None:
        """Keep a warm sequence whose slot goes to another conversation (bounded LRU)."""
        import llama_cpp

        if slot.key is None or not slot.tokens or self.saved_states <= 0:
            return
        size = llama_cpp.llama_state_seq_get_size(self.ctx, slot.seq)
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx, data, size, slot.seq)
        self._saved[slot.key] = _Saved(data, written, list(slot.tokens))
        self._saved.move_to_end(slot.key)
        while len(self._saved) > self.saved_states:
            self._saved.popitem(last=False)

    def _restore(self, slot: Slot, saved: _Saved) -> None:
        import llama_cpp

        if llama_cpp.llama_state_seq_set_data(self.ctx, saved.data, saved.size, slot.seq) == saved.size:
            slot.tokens = list(saved.tokens)
        else:  # could not restore: the prompt is evaluated from scratch
            self.clear(slot)

    def reuse(self, slot: Slot, target: list[int]) -> int:
        """Make the slot's sequence hold the longest known prefix of ``target``: its own, its
        conversation's saved state, or another sequence's (a whole-sequence copy); returns its length."""
        import llama_cpp

        best = common_prefix(slot.tokens, target)
        key = slot.key
        saved = self._saved.get(key) if key is not None else None
        if key is not None and saved is not None and common_prefix(saved.tokens, target) > best:
            del self._saved[key]
            self._restore(slot, saved)
            best = common_prefix(slot.tokens, target)
        donor, donor_n = None, best + COPY_PREFIX_MIN
        for other in self.slots:
            n = common_prefix(other.tokens, target) if other is not slot else 0
            if n >= donor_n:
                donor, donor_n = other, n
        if donor is not None:
            llama_cpp.llama_memory_seq_rm(self._memory(), slot.seq, -1, -1)
            llama_cpp.llama_memory_seq_cp(self._memory(), donor.seq, slot.seq, -1, -1)
            slot.tokens = list(donor.tokens)
            best = donor_n
        self.truncate(slot, best)
        return best

    def evict_idle(self) -> bool:
        """Empty every warm sequence (the KV cache is full); False when there was none."""
        idle = [s for s in self.slots if s.job is None and s.tokens]
        for s in idle:
            self.clear(s)
            s.key = None
        return bool(idle)
