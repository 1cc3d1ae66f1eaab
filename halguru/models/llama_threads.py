"""How many threads a llama.cpp step gets: measured, not assumed.

A step can run on ``one`` thread count (llama-cpp-python's default: half the cores) or ``many`` (all of
them). On an idle two-core machine ``many`` cuts a batch's time (several slots' tokens, or a prompt) by
30-45% and a lone stream's one-token step by ~25% (55 -> 77-85 tok/s), but on a busy one llama.cpp's
threads spin at every operation's barrier waiting for a thread the kernel has not scheduled, and a step
can take many times longer than on one thread. So each kind of step keeps the per-token cost it has
measured with each count, uses the cheaper, and re-tries the other now and then (exponentially less often
while it keeps losing), so it follows the machine's load.
"""

from __future__ import annotations

PROBE_EVERY = 32  # steps between tries of the other thread count, at first
PROBE_MAX = 256  # a few seconds of steps: a count that lost during a busy spell is tried again soon
WEIGHT = 0.2  # of the newest step in the running average


class ThreadChoice:
    def __init__(self, one: int, many: int):
        self.one, self.many = one, many
        self.cost: dict[int, float] = {}  # threads -> seconds per token, running average
        self.seen: set[int] = set()
        self.current = one
        self.backoff = PROBE_EVERY
        self.countdown = 2  # learn both costs early: the second step of this kind tries the other count

    def choose(self) -> int:
        """The thread count for the next step of this kind."""
        if self.one == self.many:
            return self.one
        self.countdown -= 1
        if self.countdown <= 0:
            return self.many if self.current == self.one else self.one  # a try of the other count
        return self.current

    def record(self, threads: int, tokens: int, seconds: float) -> None:
        """What a step of ``tokens`` tokens cost on ``threads`` threads."""
        if self.one == self.many or tokens <= 0:
            return
        per_token = seconds / tokens
        if threads not in self.seen:  # the first step on a thread count also starts its threads: measure again
            self.seen.add(threads)
            self.countdown = 1
            return
        old = self.cost.get(threads)
        # A try's step is all that is known of its count now: what it measured earlier, maybe in a busy spell
        # minutes ago, would take a dozen tries hundreds of steps apart to wear off.
        tried = threads != self.current
        self.cost[threads] = per_token if old is None or tried else (1 - WEIGHT) * old + WEIGHT * per_token
        other = self.one if threads == self.many else self.many
        if tried:  # switch if it did better, else try again later and less often
            if self.cost[threads] < self.cost.get(other, float("inf")):
                self.current, self.backoff = threads, PROBE_EVERY
            else:
                self.backoff = min(self.backoff * 2, PROBE_MAX)
            self.countdown = self.backoff
        elif other in self.cost and self.cost[threads] > self.cost[other] * 1.5:
            # the machine got busier (or quieter): what was better is now clearly worse
            self.current, self.countdown = other, self.backoff
