"""The job queue on PostgreSQL under what SQLite never sees: writers at once. Claimers in several stores (each
its own connection pool, as separate processes would be) take jobs with ``FOR UPDATE SKIP LOCKED`` while others
are still being queued: no job is taken twice, and the jobs of one queue key run one at a time, in the order
they were queued. And ``LISTEN/NOTIFY`` wakes an idle worker as soon as another process queues a job."""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict

import pytest

from halguru.store.postgres import PostgresStore

pytestmark = pytest.mark.parametrize("backend", ["postgres"])

KEYS, PER_KEY, KEYLESS = 6, 8, 30


def test_concurrent_claimers_never_share_a_job_and_keep_each_key_in_order(store_factory) -> None:
    stores: list[PostgresStore] = [store_factory() for _ in range(3)]
    running: dict[str, str] = {}  # queue key -> the job running it now
    ran: dict[str, list[int]] = defaultdict(list)
    taken: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()
    enqueued = threading.Event()
    start = threading.Barrier(KEYS + 6)

    def enqueue(key: int) -> None:  # one producer per key (its order is known), all of them at once
        start.wait()
        for n in range(PER_KEY):
            stores[key % 3].enqueue_job("reply", "echo", {"key": f"k{key}", "n": n}, queue_key=f"k{key}")
            if key == 0:
                stores[0].enqueue_job("run", "echo", {"n": n})

    def claim(store: PostgresStore, worker: str) -> None:
        start.wait()
        idle_since = None
        while True:
            job = store.claim_job(worker, lease=30)
            if job is None:
                if enqueued.is_set() and idle_since is not None and time.monotonic() - idle_since > 0.5:
                    return
                idle_since = idle_since or time.monotonic()
                time.sleep(0.005)
                continue
            idle_since = None
            key = job["queue_key"]
            with lock:
                taken.append(job["id"])
                if key is not None:
                    if key in running:
                        problems.append(f"{job['id']} ran while {running[key]} of {key} was running")
                    running[key] = job["id"]
                    ran[key].append(job["payload"]["n"])
            time.sleep(0.002)  # the work
            with lock:
                if key is not None:
                    running.pop(key, None)
            assert store.finish_job(job["id"], worker)

    for n in range(KEYLESS - PER_KEY):
        stores[1].enqueue_job("run", "echo", {"n": n})
    producers = [threading.Thread(target=enqueue, args=(k,)) for k in range(KEYS)]
    claimers = [threading.Thread(target=claim, args=(stores[i % 3], f"w{i}")) for i in range(6)]
    for thread in producers + claimers:
        thread.start()
    for thread in producers:
        thread.join(60)
    enqueued.set()
    for thread in claimers:
        thread.join(60)

    assert not problems, problems[:3]
    assert len(taken) == KEYS * PER_KEY + KEYLESS and len(set(taken)) == len(taken)
    assert {key: order for key, order in ran.items()} == {f"k{k}": list(range(PER_KEY)) for k in range(KEYS)}
    assert stores[2].job_stats()["done"] == len(taken)


def test_an_idle_worker_wakes_within_50_ms_of_a_job_queued_elsewhere(store_factory) -> None:
    waiter, other = store_factory(), store_factory()
    never = threading.Event()
    began = time.monotonic()
    waiter.wait_for_jobs(0.3, never)  # nothing queued: the whole timeout
    assert 0.28 <= time.monotonic() - began < 1.0

    def enqueue(queued_at: list[float]) -> None:
        time.sleep(0.2)
        queued_at.append(time.monotonic())
        other.enqueue_job("run", "echo", {})
        queued_at.append(time.monotonic())  # committed (and notified) by now

    delays = []
    for _ in range(5):
        queued_at: list[float] = []
        thread = threading.Thread(target=enqueue, args=(queued_at,))
        thread.start()
        waiter.wait_for_jobs(10, never)
        woke = time.monotonic()
        thread.join()
        assert woke >= queued_at[0], "woke before the job was queued"
        delays.append(woke - queued_at[1])  # at most: it may wake before enqueue_job has returned
    assert statistics.median(delays) < 0.05 and max(delays) < 0.5, delays


def test_woken_interrupts_the_wait_within_50_ms(store) -> None:
    woken = threading.Event()
    threading.Timer(0.2, woken.set).start()
    began = time.monotonic()
    store.wait_for_jobs(10, woken)
    assert 0.19 <= time.monotonic() - began < 0.35
