"""The thread count of llama.cpp batches follows what each count measured (the machine's load)."""

from __future__ import annotations

from halguru.models.llama_threads import PROBE_EVERY, PROBE_MAX, ThreadChoice


def run(choice: ThreadChoice, steps: int, cost: dict[int, float]) -> list[int]:
    used = []
    for _ in range(steps):
        threads = choice.choose()
        used.append(threads)
        choice.record(threads, 4, cost[threads] * 4)
    return used


def test_more_threads_are_kept_while_they_are_faster_and_dropped_when_the_machine_gets_busy() -> None:
    choice = ThreadChoice(1, 2)

    idle = run(choice, 200, {1: 0.030, 2: 0.018})
    busy = run(choice, 200, {1: 0.030, 2: 0.300})  # threads waiting for each other: ten times slower

    assert idle[:3] == [1, 2, 2]  # the other count is tried at once (its first step only starts its threads)
    assert idle[-100:].count(2) > 95  # the faster count, re-checking the other now and then
    assert busy[0] == 2 and busy[1] == 1  # one slow step is enough to switch back
    assert busy[-150:].count(2) <= 3  # tries of the slow count get rarer


def test_a_busy_spell_is_forgotten_at_the_next_try_once_the_machine_is_quiet() -> None:
    """More threads lost for a while (another program's start-up, say): the first try after the machine
    quietens brings them back, however slow they measured before (the bench ran on one thread for minutes)."""
    choice = ThreadChoice(1, 2)
    run(choice, 300, {1: 0.030, 2: 0.300})
    quiet = run(choice, PROBE_MAX + 200, {1: 0.030, 2: 0.018})
    assert quiet[-200:].count(2) > 190


def test_one_thread_everywhere_when_there_is_no_choice() -> None:
    choice = ThreadChoice(2, 2)
    assert set(run(choice, 3 * PROBE_EVERY, {2: 0.01})) == {2}
