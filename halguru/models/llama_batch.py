"""Continuous batching: many generations through one llama.cpp model, in one context, on one thread.

The engine owns a llama.cpp context with ``slots`` sequences (``n_seq_max``), each with its own share
of the KV cache (``slot_ctx`` tokens; ``n_ctx = slots × slot_ctx``). A generation is a *program*
(``llama_jobs``): a generator that yields what its sequence must hold next (``Eval``: exactly these
tokens; ``Feed``: these tokens appended) and is resumed with the batch index of the last token's logits,
from which it samples with its own sampler chain (its own grammar, temperature, seed). Every step decodes, in a
single ``llama_decode``, one token for each slot that is generating, then a chunk of the prompt of
each slot still prefilling (each in its own call, so it is evaluated as it would be alone), so a new
request's prompt never stalls the running ones for long.

Invariants:
- ``Slot.tokens`` is exactly what the KV cache holds for the slot's sequence (positions 0..n-1;
  ``llama_kv`` changes both together).
- A finished or cancelled generation frees its slot at once; its sequence stays *warm* (KV kept,
  keyed by conversation) until another request needs the slot, so a returning conversation resumes
  from its prefix. A warm sequence whose slot is taken by another conversation is saved
  (``llama_state_seq_get_data``) in an LRU of ``saved_states`` and restored when it comes back.
- No slot starves: every generating slot gets a token every step; prompts are prefilled oldest first.
  Requests beyond the slots wait in arrival order (the server's gate in front is fair across clients).

Everything llama.cpp is touched from the worker thread only; ``submit`` and ``stats`` are thread-safe.

The GIL: every ctypes call releases it, and taking it back from a busy event loop can wait a switch
interval (5 ms). So sampling (tens of microseconds) keeps it (``llama_sampling.keeping_gil``), and what a
step produces for the event loops (tokens, ends) is posted once per step and loop (``post``), not once per
token.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halguru.errors import ModelError
from halguru.models.llama_context import N_BATCH, LlamaContext
from halguru.models.llama_jobs import Eval, Feed, Job, Program
from halguru.models.llama_kv import SequenceCache, Slot, common_prefix
from halguru.models.llama_threads import ThreadChoice

__all__ = ["Eval", "Feed", "Job", "LlamaEngine", "Program", "Stats"]

PREFILL_CHUNK = 256  # prompt tokens per step while other slots are generating (their step gets this much slower)
RATE_WINDOW_S = 10.0  # the aggregate tokens/s figure covers this many recent seconds
EXIT_WAIT_S = 60.0  # at exit, how long a worker may take to finish the llama.cpp step it is in


@dataclass
class Stats:
    """Counters since the model loaded (plain numbers; the server exports them to Prometheus)."""

    steps: int = 0
    batch_tokens: int = 0  # tokens decoded, all steps
    last_batch: int = 0
    decoded_tokens: int = 0  # generated tokens fed back (one per slot per step)
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0  # steps that prefilled a prompt (with any generating slots in them)
    decode_seconds: float = 0.0  # steps that only generated
    reused_tokens: int = 0  # prompt tokens found in the KV cache instead of evaluated
    generations: int = 0
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))


class LlamaEngine(LlamaContext):
    """Continuous batching over a ``LlamaContext``: requests (``Job``) wait for a slot, and every step decodes
    a token for each generating slot and a chunk of each prefilling one's prompt (see the module's doc)."""

    def __init__(self, name: str, path: Path, slots: int, slot_ctx: int, n_threads: int | None,
                 saved_states: int):
        super().__init__(name, path, slots, slot_ctx, n_threads)
        self._slots = [Slot(i) for i in range(slots)]
        self._kv = SequenceCache(self._slots, saved_states)
        self._waiting: deque[Job] = deque()
        self._jobs: queue.Queue[Job | None] = queue.Queue()  # None: the process is exiting (close)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._start_lock = threading.Lock()
        self._stats = Stats()
        self._single_threads = ThreadChoice(1, 1)  # for one-token steps (a lone stream), set at load
        self._generating_threads: dict[int, ThreadChoice] = {}  # per batch size: steps that only generate
        self._prompt_threads = ThreadChoice(1, 1)  # for steps that evaluate prompt tokens
        self._posts: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Any], None], Any, threading.Event]]] = {}

    # -- any thread ------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"llama:{self.name}", daemon=True)
                self._thread.start()
                _RUNNING.add(self)
        self._jobs.put(job)

    def close(self, timeout: float) -> None:
        """Stop the worker thread once the llama.cpp step it is in has finished (at most ``timeout`` s)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._closing = True
        self._jobs.put(None)  # wakes a worker waiting for work
        thread.join(timeout)

    def post(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Any], None], item: Any,
             cancelled: threading.Event) -> None:
        """Hand ``item`` to ``deliver`` on ``loop`` (worker thread): sent with the step's other items in one
        wake-up of that loop. If the loop is gone, nobody listens: ``cancelled`` is set."""
        self._posts.setdefault(loop, []).append((deliver, item, cancelled))

    def _send_posts(self) -> None:
        posts, self._posts = self._posts, {}
        for loop, items in posts.items():
            try:
                loop.call_soon_threadsafe(_deliver_all, items)
            except RuntimeError:  # the loop is closed (its run ended early and asyncio.run returned)
                for _, _, cancelled in items:
                    cancelled.set()

    def stats(self) -> dict[str, float]:
        """Plain numbers for metrics: slots in use, batch sizes, aggregate tokens/s, prefill vs decode time."""
        s = self._stats
        now = time.monotonic()
        recent = [(t, n) for t, n in list(s.recent) if now - t <= RATE_WINDOW_S]
        rate = sum(n for _, n in recent) / RATE_WINDOW_S if recent else 0.0
        return {
            "slots": float(self.slots), "active_slots": float(sum(1 for x in self._slots if x.job is not None)),
            "waiting": float(len(self._waiting) + self._jobs.qsize()), "steps": float(s.steps),
            "last_batch_tokens": float(s.last_batch),
            "mean_batch_tokens": s.batch_tokens / s.steps if s.steps else 0.0,
            "generated_tokens": float(s.decoded_tokens), "prefill_tokens": float(s.prefill_tokens),
            "reused_tokens": float(s.reused_tokens), "prefill_seconds": s.prefill_seconds,
            "decode_seconds": s.decode_seconds, "tokens_per_second": rate, "generations": float(s.generations),
        }

    # -- worker thread: loading -------------------------------------------
    def load(self) -> None:
        """The model and its context (once), with fresh thread choices for the thread counts it got."""
        if self.ctx is not None:
            return
        super().load()
        self._kv.ctx = self.ctx
        self._prompt_threads = ThreadChoice(*self._threads)
        self._single_threads = ThreadChoice(*self._threads)

    # -- worker thread: the loop -----------------------------------------
    def _work(self) -> None:
        while not self._closing:
            try:
                self._send_posts()  # before waiting for work: nothing produced may sit here
                self._take_jobs(block=not any(s.job is not None for s in self._slots))
                if self._closing:
                    return
                self._drop_cancelled()
                self._admit()
                if any(s.job is not None and s.pending for s in self._slots):
                    self._step()
            except Exception as exc:  # a bug here must fail the running requests, not leave them waiting forever
                for slot in self._slots:
                    if slot.job is not None:
                        self._fail(slot, exc)

    def _take_jobs(self, block: bool) -> None:
        if block and not self._waiting:
            self._take(self._jobs.get())
        while True:
            try:
                self._take(self._jobs.get_nowait())
            except queue.Empty:
                return

    def _take(self, job: Job | None) -> None:
        if job is None:
            self._closing = True
        else:
            self._waiting.append(job)

    def _drop_cancelled(self) -> None:
        for s in self._slots:
            if s.job is not None and s.job.cancelled.is_set():
                self._finish(s)
        if any(j.cancelled.is_set() for j in self._waiting):
            for job in [j for j in self._waiting if j.cancelled.is_set()]:
                self._waiting.remove(job)
                job.done()

    def _admit(self) -> None:
        """Give the free slots to waiting jobs in arrival order; a job's first need (its prompt) picks its slot."""
        while self._waiting:
            free = [s for s in self._slots if s.job is None]
            if not free:
                return
            job = self._waiting.popleft()
            started = self._start(job)
            if started is None:
                continue
            program, need = started
            slot = self._choose(free, job.key, need.tokens if isinstance(need, Eval) else [])
            if slot.key != job.key:
                self._kv.save(slot)
                slot.key = job.key
            slot.job, slot.program, slot.started = job, program, time.monotonic()
            self._stats.generations += 1
            self._apply(slot, need)

    def _start(self, job: Job) -> tuple[Program, Eval | Feed] | None:
        """The job's program and its first need, the model loaded first; None when the job is already done (it
        failed, or its program needed nothing)."""
        try:
            self.load()
        except Exception as exc:  # a missing or broken file: this request fails, the next one tries again
            job.fail(exc if isinstance(exc, ModelError) else ModelError(f"llama.cpp failed on {self.path.name}: "
                                                                        f"{exc}"))
            job.done()
            return None
        try:
            program = job.start()
            return program, next(program)
        except StopIteration:
            job.done()
        except Exception as exc:
            job.fail(exc if isinstance(exc, ModelError) else ModelError(f"llama.cpp failed: {exc}"))
            job.done()
        return None

    @staticmethod
    def _choose(free: list[Slot], key: str | None, prompt: list[int]) -> Slot:
        """The conversation's own warm slot; else the one holding the longest start of the prompt (the same
        agent's instructions), an empty one before a warm one, the one idle longest before others."""
        for s in free:
            if key is not None and s.key == key:
                return s
        return max(free, key=lambda s: (common_prefix(s.tokens, prompt), not s.tokens, -s.last_used))

    # -- programs ----------------------------------------------------------
    def _apply(self, slot: Slot, need: Eval | Feed) -> None:
        slot.feeding = isinstance(need, Feed)
        if isinstance(need, Feed):
            slot.pending = list(need.tokens)
            return
        target = need.tokens
        n = min(self._kv.reuse(slot, target), len(target) - 1)  # the last token is decoded again for its logits
        self._kv.truncate(slot, n)
        if slot.job is not None and slot.job.reused is None:
            slot.job.reused = n
        self._stats.reused_tokens += n
        slot.pending = list(target[n:])

    def _resume(self, slot: Slot, index: int) -> None:
        assert slot.program is not None
        try:
            need = slot.program.send(index)
        except StopIteration:
            self._finish(slot)
            return
        except Exception as exc:
            self._fail(slot, exc)
            return
        self._apply(slot, need)

    def _fail(self, slot: Slot, exc: BaseException) -> None:
        if slot.job is not None:
            slot.job.fail(exc if isinstance(exc, ModelError) else ModelError(f"llama.cpp failed on "
                                                                             f"{self.path.name}: {exc}"))
        self._finish(slot)

    def _finish(self, slot: Slot) -> None:
        """Free the slot now; its sequence stays warm for the conversation's next turn."""
        if slot.program is not None:
            slot.program.close()  # runs the program's cleanup (its sampler chains)
        job = slot.job
        slot.job, slot.program, slot.pending = None, None, []
        slot.last_used = time.monotonic()
        if job is not None:  # told last, so whoever it wakes finds the slot already free (stats, the next turn)
            job.done()

    # -- one step: one llama_decode for every slot -----------------------
    def _plan(self) -> list[tuple[Slot, list[int]]]:
        """Each generating slot's next token, then prompt chunks, oldest request first, within the batch."""
        active = [s for s in self._slots if s.job is not None and s.pending]
        parts = [(s, s.pending[:1]) for s in active if len(s.pending) == 1]
        budget = (min(PREFILL_CHUNK, N_BATCH - len(parts)) if parts else N_BATCH)
        for s in sorted((s for s in active if len(s.pending) > 1), key=lambda s: s.started):
            if budget <= 0:
                break
            chunk = s.pending[:budget]
            parts.append((s, chunk))
            budget -= len(chunk)
        return parts

    def _fill(self, parts: list[tuple[Slot, list[int]]]) -> list[int]:
        """Write the planned tokens into the batch; returns, per part, the index of its last token."""
        b = self._batch
        i = 0
        last: list[int] = []
        for slot, chunk in parts:
            pos = len(slot.tokens)
            wants_logits = len(chunk) == len(slot.pending)
            for j, token in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i] = token, pos + j, 1
                b.seq_id[i][0] = slot.seq
                b.logits[i] = wants_logits and j == len(chunk) - 1
                i += 1
            last.append(i - 1)
        b.n_tokens = i
        return last

    def _step(self) -> None:
        """One token for every generating slot in one llama_decode, then each planned prompt chunk in its own:
        llama.cpp splits a batch that mixes sequences into equal shares per sequence, so a prompt batched with
        other slots' tokens would be evaluated in other pieces than alone, and rounded differently."""
        parts = self._plan()
        generating = [(slot, chunk) for slot, chunk in parts if slot.feeding]
        prompts = [(slot, chunk) for slot, chunk in parts if not slot.feeding]  # before resuming changes them
        if generating:
            # a choice per batch size: a token costs less in a bigger batch, so one running average over every
            # size compares counts measured on different loads (2 streams against 8) and picks wrongly
            size = len(generating)
            choice = self._generating_threads.get(size)
            if choice is None:
                choice = self._generating_threads[size] = ThreadChoice(*self._threads)
            self._decode(generating, choice)
        for slot, chunk in prompts:
            self._decode([(slot, chunk)], self._prompt_threads)

    def _decode(self, parts: list[tuple[Slot, list[int]]], choice: ThreadChoice) -> None:
        import llama_cpp

        last = self._fill(parts)
        n = sum(len(chunk) for _, chunk in parts)
        # llama.cpp runs a one-token step on its one-token thread count, a batch on its batch count: each is
        # what was measured best for that kind of step (a lone stream's steps are one token)
        if n == 1:
            choice = self._single_threads
        threads = choice.choose()
        self.use_threads(threads, one_token=n == 1)
        started = time.perf_counter()
        result = llama_cpp.llama_decode(self.ctx, self._batch)
        if result == 1 and self._kv.evict_idle():  # no room in the KV cache: drop warm sequences, try again
            result = llama_cpp.llama_decode(self.ctx, self._batch)
        elapsed = time.perf_counter() - started
        if result != 0:
            for slot, _ in parts:
                self._kv.clear(slot)
                self._fail(slot, ModelError(f"llama.cpp could not decode a batch (code {result}) on "
                                            f"{self.path.name}; the context may be full (HALGURU_LLAMA_N_CTX)"))
            return
        choice.record(threads, n, elapsed)
        self._count(parts, elapsed)
        for (slot, chunk), index in zip(parts, last, strict=True):
            slot.tokens.extend(chunk)
            del slot.pending[:len(chunk)]
            if not slot.pending and slot.job is not None:
                self._resume(slot, index)

    def _count(self, parts: list[tuple[Slot, list[int]]], elapsed: float) -> None:
        s = self._stats
        n = sum(len(c) for _, c in parts)
        generated = sum(len(c) for slot, c in parts if slot.feeding)
        s.steps += 1
        s.batch_tokens += n
        s.last_batch = n
        s.decoded_tokens += generated
        s.prefill_tokens += n - generated
        if n > generated:
            s.prefill_seconds += elapsed
        else:
            s.decode_seconds += elapsed
        s.recent.append((time.monotonic(), generated))


def _deliver_all(items: list[tuple[Callable[[Any], None], Any, threading.Event]]) -> None:
    for deliver, item, _ in items:
        deliver(item)


_RUNNING: weakref.WeakSet[LlamaEngine] = weakref.WeakSet()  # engines whose worker thread was started


@atexit.register
def _close_engines() -> None:
    """Let each engine's worker finish the llama.cpp step it is in before the process exits: the exit runs
    llama.cpp's static destructors, and a step still computing on the (daemon) worker thread then crashed
    the process (SIGSEGV on Ctrl-C during a prompt's evaluation, in `halguru run`, `test`, `eval`...)."""
    for engine in list(_RUNNING):
        engine.close(timeout=EXIT_WAIT_S)
