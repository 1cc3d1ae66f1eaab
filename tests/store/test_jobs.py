"""The job queue's semantics in the store: one claim per job, leases, retries and dead jobs, per-queue-key
order, idempotency keys, effects done once, schedules fired once. Written against the Store interface: every
test runs on SQLite and on PostgreSQL (the ``store`` fixture); ``test_postgres_queue`` adds what only concurrent
PostgreSQL writers can show."""

from __future__ import annotations

import threading
import time

import pytest

from halguru.errors import TooManyJobs
from halguru.store import Store
from halguru.store.records import fair_key


def test_enqueue_claim_finish(store: Store) -> None:
    job, created = store.enqueue_job("run", "echo", {"input": "hi"})
    assert created and job["status"] == "queued" and job["attempts"] == 0
    claimed = store.claim_job("w1", lease=30)
    assert claimed is not None and claimed["id"] == job["id"] and claimed["status"] == "running"
    assert claimed["attempts"] == 1 and claimed["holder"] == "w1"
    assert store.claim_job("w2", lease=30) is None  # nobody else gets it
    assert not store.finish_job(job["id"], "w2", {"x": 1})  # not the holder
    assert store.finish_job(job["id"], "w1", {"answer": "hello"})
    done = store.get_job(job["id"])
    assert done is not None and done["status"] == "done" and done["result"] == {"answer": "hello"}


def test_claims_are_fair_across_owners(store: Store) -> None:
    """One key's 40 queued jobs held back another key's job until all were done: claims went oldest first. The
    due job of the owner with the fewest running comes first now; within one owner, oldest first."""
    mine = [store.enqueue_job("run", "slow", {"input": str(i)}, owner="key:a")[0]["id"] for i in range(5)]
    time.sleep(0.01)
    theirs, _ = store.enqueue_job("run", "echo", {"input": "b"}, owner="key:b")
    channel, _ = store.enqueue_job("reply", "echo", {"text": "c"}, owner="channel:twilio")
    claims = [store.claim_job("w", lease=30) for _ in range(4)]
    assert [c["id"] for c in claims if c] == [mine[0], theirs["id"], channel["id"], mine[1]]


def test_two_busy_owners_do_not_hold_back_a_third(store: Store) -> None:
    """A worker of two slots busy with A's and B's floods, claiming one as one finishes: C's job went after all
    of their older ones (A, B, A, B, ... C). The owners it served last wait while another has a job due."""
    for owner in "ab":
        for i in range(5):
            store.enqueue_job("run", "echo", {"input": f"{owner}{i}"}, owner=f"key:{owner}")
    time.sleep(0.01)
    third, _ = store.enqueue_job("run", "echo", {"input": "c"}, owner="key:c")
    served: list[str] = []

    def claim() -> dict:
        job = store.claim_job("w", lease=30, served=served[-2:])
        assert job is not None
        served.append(fair_key(job["owner"], job["agent"]))
        return job

    first, second = claim(), claim()
    assert {first["owner"], second["owner"]} == {"key:a", "key:b"}
    assert store.finish_job(first["id"], "w")
    assert claim()["id"] == third["id"]  # not the next of a (or b)

def test_an_owners_waiting_jobs_are_capped_when_asked(store: Store) -> None:
    for i in range(2):
        store.enqueue_job("run", "echo", {"input": str(i)}, owner="key:a", max_waiting=2, idempotency_key=f"a{i}")
    with pytest.raises(TooManyJobs, match="2 of your jobs are already waiting"):
        store.enqueue_job("run", "echo", {"input": "x"}, owner="key:a", max_waiting=2)
    assert not store.enqueue_job("run", "echo", {"input": "0"}, owner="key:a", max_waiting=2,
                                 idempotency_key="a0")[1]  # a repeat: the first job, no error
    assert store.enqueue_job("run", "echo", {"input": "b"}, owner="key:b", max_waiting=2)[1]
    assert store.enqueue_job("reply", "echo", {"text": "c"}, owner="key:a")[1]  # no cap asked: the channels'
    job = store.claim_job("w", lease=30)  # running, no longer waiting
    assert job is not None and job["owner"] == "key:a"
    assert store.enqueue_job("run", "echo", {"input": "y"}, owner="key:a", max_waiting=3)[1]
    assert len(store.list_jobs(10, owner="key:a")) == 4


def test_retrying_every_dead_job_keeps_each_owner_under_the_cap(store: Store) -> None:
    """Everyone's dead jobs retried at once (an admin's bulk retry) with a cap: each owner gets the room their
    cap leaves, oldest first; jobs of no owner are nobody's to cap; how many stay dead is said."""
    def dead(owner: str | None, n: int) -> list[str]:
        ids = []
        for i in range(n):
            job, _ = store.enqueue_job("run", "echo", {"n": i}, owner=owner)
            assert store.claim_job("w", lease=30)["id"] == job["id"]
            assert store.fail_job(job["id"], "w", "down", None) == "dead"
            ids.append(job["id"])
        return ids

    store.enqueue_job("run", "echo", {"waiting": 1}, owner="key:a", delay=3600)
    jobs = {"key:a": dead("key:a", 3), "key:b": dead("key:b", 3), None: dead(None, 2)}
    assert store.retry_dead_jobs(["echo"], max_waiting=2) == (5, 3)
    assert {o: [store.get_job(j)["status"] for j in ids] for o, ids in jobs.items()} == {
        "key:a": ["queued", "dead", "dead"], "key:b": ["queued", "queued", "dead"], None: ["queued", "queued"]}
    assert store.retry_dead_jobs(["echo"], owner="key:a", max_waiting=2) == (0, 2)  # a's cap is full
    assert store.retry_dead_jobs(["other"], max_waiting=2) == (0, 0)
    assert store.retry_dead_jobs(None) == (3, 0)  # no cap asked: every one


@pytest.mark.parametrize("kind", ["enqueue", "retry"])
def test_an_owners_cap_holds_for_enqueues_and_retries_at_once(store_factory, kind: str) -> None:
    """Two processes' 16 threads queue (or retry) one owner's jobs at the same moment: the cap of 5 holds. On
    PostgreSQL each transaction counted before the others committed, and up to all 16 got in."""
    stores = [store_factory(), store_factory()]
    cancelled = [stores[0].enqueue_job("run", "echo", {"n": i}, owner="key:a")[0]["id"] for i in range(16)]
    for job_id in cancelled:
        stores[0].cancel_job(job_id)
    start = threading.Barrier(16)
    accepted: list[bool] = []

    def add(i: int) -> None:
        start.wait()
        store = stores[i % 2]
        try:
            if kind == "retry":
                accepted.append(store.retry_job(cancelled[i], owner="key:a", max_waiting=5))
            else:
                accepted.append(store.enqueue_job("run", "echo", {}, owner="key:a", max_waiting=5)[1])
        except TooManyJobs:
            accepted.append(False)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (len(accepted), sum(accepted)) == (16, 5)


def test_a_flood_of_one_owners_jobs_does_not_hold_back_anothers(store: Store) -> None:
    """With one owner's 300 jobs queued and one of them running, another owner's later job is next, then the
    flood's, oldest first (the claim's searches walk the due jobs in order: each stops at its first match)."""
    for i in range(300):
        store.enqueue_job("run", "echo", {"input": str(i)}, owner="key:flood")
    first = store.claim_job("w", lease=30)
    late, _ = store.enqueue_job("run", "echo", {"input": "me"}, owner="key:late")
    assert first is not None and first["owner"] == "key:flood"
    second = store.claim_job("w", lease=30)
    assert second is not None and second["id"] == late["id"]
    third = store.claim_job("w", lease=30)
    assert third is not None and third["payload"] == {"input": "1"}  # then the flood, oldest first


def test_one_agents_flood_does_not_hold_back_another_agents_jobs_of_the_same_owner(store: Store) -> None:
    """Fairness was by owner alone: an inbox's 300 replies (channel and schedule jobs have no owner, nor do the
    jobs of one operator's key for all its agents) held back another agent's job, queued after them, until all 300
    were done (measured: claimed 301st, on SQLite and PostgreSQL). Now owner and agent take turns: it is second;
    the flood then goes on, oldest first."""
    for i in range(300):
        store.enqueue_job("reply", "inbox", {"text": str(i)})
    time.sleep(0.01)
    store.enqueue_job("run", "reports", {"input": "weekly"})
    served: list[str] = []
    claimed = []
    for _ in range(3):
        job = store.claim_job("w", lease=30, served=served[-2:])
        assert job is not None and store.finish_job(job["id"], "w")
        served.append(fair_key(job["owner"], job["agent"]))
        claimed.append(job["payload"])
    assert claimed == [{"text": "0"}, {"input": "weekly"}, {"text": "1"}]


def test_an_agents_queued_jobs_are_cancelled_at_once(store: Store) -> None:
    """``cancel_queued_jobs``: the agent's queued jobs, not its running one nor another agent's; a cancelled job can
    be retried as one cancelled alone."""
    flood = [store.enqueue_job("reply", "inbox", {"text": str(i)})[0]["id"] for i in range(50)]
    other, _ = store.enqueue_job("run", "reports", {"input": "weekly"})
    running = store.claim_job("w", lease=30, agents=["inbox"])
    assert running is not None and running["id"] == flood[0]
    assert store.cancel_queued_jobs("inbox") == 49 and store.cancel_queued_jobs("inbox") == 0
    assert {j["status"] for j in store.list_jobs(100, agent="inbox")} == {"cancelled", "running"}
    assert store.get_job(other["id"])["status"] == "queued"
    assert store.retry_job(flood[1]) and store.get_job(flood[1])["status"] == "queued"


def test_idempotency_key_queues_once(store: Store) -> None:
    first, created = store.enqueue_job("reply", "echo", {"text": "a"}, idempotency_key="twilio:SM1")
    again, created_again = store.enqueue_job("reply", "echo", {"text": "b"}, idempotency_key="twilio:SM1")
    assert created and not created_again and again["id"] == first["id"] and again["payload"] == {"text": "a"}
    assert len(store.list_jobs(10)) == 1


def test_expired_lease_is_claimed_again_and_dies_after_max_attempts(store: Store) -> None:
    job, _ = store.enqueue_job("run", "echo", {"input": "x"}, max_attempts=2)
    assert store.claim_job("dead-worker", lease=0.05) is not None
    time.sleep(0.1)
    again = store.claim_job("w2", lease=0.05)
    assert again is not None and again["id"] == job["id"] and again["attempts"] == 2
    assert not store.renew_job(job["id"], "dead-worker", 30)  # the first holder lost it
    time.sleep(0.1)
    assert store.claim_job("w3", lease=30) is None  # two claims used up: dead, not a third run
    dead = store.get_job(job["id"])
    assert dead is not None and dead["status"] == "dead" and "lease expired" in (dead["last_error"] or "")


def test_failure_backs_off_then_dead_letter(store: Store) -> None:
    job, _ = store.enqueue_job("run", "echo", {"input": "x"}, max_attempts=2)
    store.claim_job("w", lease=30)
    before = time.time()
    assert store.fail_job(job["id"], "w", "model down", retry_in=1.0) == "queued"
    after = time.time()
    assert store.claim_job("w", lease=30) is None  # not before its backoff
    due = store.job_next_due()
    assert due is not None and before + 1.0 <= due <= after + 1.0
    time.sleep(max(0.0, due - time.time()) + 0.05)
    assert store.claim_job("w", lease=30) is not None
    assert store.fail_job(job["id"], "w", "model still down", retry_in=0.2) == "dead"
    dead = store.get_job(job["id"])
    assert dead is not None and dead["status"] == "dead" and dead["last_error"] == "model still down"
    assert store.retry_job(job["id"])
    revived = store.claim_job("w", lease=30)
    assert revived is not None and revived["attempts"] == 1


def test_queue_key_runs_in_order_one_at_a_time(store: Store) -> None:
    a, _ = store.enqueue_job("reply", "echo", {"n": 1}, queue_key="sms:+1")
    b, _ = store.enqueue_job("reply", "echo", {"n": 2}, queue_key="sms:+1")
    other, _ = store.enqueue_job("reply", "echo", {"n": 3}, queue_key="sms:+2")
    first = store.claim_job("w1", lease=30)
    second = store.claim_job("w2", lease=30)
    assert first is not None and second is not None
    assert (first["id"], second["id"]) == (a["id"], other["id"])  # b waits for a, other does not
    assert store.claim_job("w3", lease=30) is None
    store.fail_job(a["id"], "w1", "retry me", retry_in=0.0)
    again = store.claim_job("w3", lease=30)
    assert again is not None and again["id"] == a["id"]  # a's retry still comes before b
    store.finish_job(a["id"], "w3")
    last = store.claim_job("w3", lease=30)
    assert last is not None and last["id"] == b["id"]


def test_cancel_takes_the_lease_away(store: Store) -> None:
    job, _ = store.enqueue_job("run", "echo", {"input": "x"})
    store.claim_job("w", lease=30)
    assert store.cancel_job(job["id"])
    assert not store.renew_job(job["id"], "w", 30)
    assert not store.finish_job(job["id"], "w")
    assert not store.cancel_job(job["id"])
    assert store.get_job(job["id"])["status"] == "cancelled"  # type: ignore[index]


def test_a_cancelled_running_job_holds_its_queue_key_until_its_worker_lets_go(store: Store) -> None:
    """Its worker learns of the cancel only at its next renewal, so the thread's next job waits until then, and
    a retry of it waits for the lease its old worker may still be using."""
    a, _ = store.enqueue_job("reply", "echo", {"n": 1}, queue_key="sms:+1")
    b, _ = store.enqueue_job("reply", "echo", {"n": 2}, queue_key="sms:+1")
    held = store.claim_job("w1", lease=30)
    assert held is not None and held["id"] == a["id"] and store.cancel_job(a["id"])
    assert store.claim_job("w2", lease=30) is None  # a may still be running on w1
    assert not store.let_go_job(a["id"], "w2")  # only its holder lets go
    assert store.let_go_job(a["id"], "w1")  # w1 stopped it
    after = store.claim_job("w2", lease=30)
    assert after is not None and after["id"] == b["id"]
    store.finish_job(b["id"], "w2")

    c, _ = store.enqueue_job("reply", "echo", {"n": 3}, queue_key="sms:+1")
    running = store.claim_job("w1", lease=30)
    assert running is not None and running["id"] == c["id"] and store.cancel_job(c["id"])
    assert store.retry_job(c["id"])
    assert store.claim_job("w2", lease=30) is None  # queued again, but not before w1's lease has passed
    assert store.get_job(c["id"])["run_after"] >= running["lease_expires"]  # type: ignore[index]


def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    for i in range(200):
        store.enqueue_job("run", "echo", {"n": i})
    taken: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claim(worker: str) -> None:
        start.wait()
        while (job := store.claim_job(worker, lease=30)) is not None:
            with lock:
                taken.append(job["id"])
            store.finish_job(job["id"], worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 200 and len(set(taken)) == 200
    assert store.job_stats()["done"] == 200


def test_effects_are_recorded_once(store: Store) -> None:
    assert store.begin_effect("job_1", "part:0") is None  # first attempt performs it
    started = store.begin_effect("job_1", "part:0")
    assert started is not None and started["state"] == "started"  # a retry sees the attempt, outcome unknown
    store.finish_effect("job_1", "part:0", {"sid": "SM1"})
    done = store.begin_effect("job_1", "part:0")
    assert done is not None and done["state"] == "done" and done["value"] == {"sid": "SM1"}


def test_thread_conversation_is_one_per_thread(store: Store) -> None:
    results: list[str] = []
    start = threading.Barrier(4)

    def get() -> None:
        start.wait()
        results.append(store.thread_conversation("twilio", "echo", "+15550001", title="sms", owner="channel:twilio"))

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    conversation = store.get_conversation(results[0])
    assert conversation is not None and conversation["owner"] == "channel:twilio"
    assert store.thread_conversation("twilio", "echo", "+15550002") != results[0]
    store.delete_conversation(results[0])  # deleted: the thread starts a new one
    assert store.thread_conversation("twilio", "echo", "+15550001") != results[0]


def test_schedule_fires_once_per_due_time(store: Store) -> None:
    job = {"kind": "run", "agent": "echo", "payload": {"input": "digest"}, "idempotency_key": "schedule:s:100"}
    assert store.fire_schedule("s", None, 100.0, None)  # first seen
    assert not store.fire_schedule("s", None, 100.0, None)
    assert store.fire_schedule("s", 100.0, 200.0, job)
    assert not store.fire_schedule("s", 100.0, 200.0, job)  # another worker, same due time: nothing
    assert store.schedule_next("s") == 200.0
    assert [j["payload"] for j in store.list_jobs(10)] == [{"input": "digest"}]


def test_concurrent_enqueues_of_one_key_queue_one_job(store: Store) -> None:
    """A provider retrying a webhook while the first delivery is still being stored: one job."""
    created: list[bool] = []
    start = threading.Barrier(8)

    def enqueue() -> None:
        start.wait()
        created.append(store.enqueue_job("reply", "echo", {}, idempotency_key="twilio:SMdup")[1])

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created) == [False] * 7 + [True]
    assert len(store.list_jobs(10)) == 1


def test_a_pruned_channel_message_is_not_answered_again(store: Store, monkeypatch) -> None:
    """A provider's signature carries no time: a captured webhook sent again after `logs prune` deleted its job
    was a new job, and the agent answered (and texted) again. A stub keeps the key, without the content."""
    channel, _ = store.enqueue_job("reply", "echo", {"text": "secret"}, idempotency_key="twilio:echo:SM1",
                                   owner="channel:twilio")
    api, _ = store.enqueue_job("run", "echo", {"input": "x"}, idempotency_key="k1", owner="key:a")
    for _ in range(2):
        claimed = store.claim_job("w", lease=30)
        assert claimed is not None and store.finish_job(claimed["id"], "w", {"answer": "hi"})
    store.prune_runs(time.time() + 1)
    stub = store.get_job(channel["id"])
    assert stub is not None and stub["kind"] == "pruned" and stub["payload"] == {} and stub["result"] is None
    assert store.get_job(api["id"]) is None
    assert store.list_jobs(10) == [] and store.job_stats()["done"] == 0
    again, created = store.enqueue_job("reply", "echo", {"text": "secret"}, idempotency_key="twilio:echo:SM1",
                                       owner="channel:twilio")
    assert not created and again["id"] == channel["id"]
    import halguru.store.sql_runs as sql_runs

    monkeypatch.setattr(sql_runs, "REPLAY_GUARD_S", 0.0)  # stubs go after their guard time
    store.prune_runs(time.time() + 1)
    assert store.get_job(channel["id"]) is None


def test_a_retried_job_keeps_the_delay_it_was_queued_with(store: Store) -> None:
    """A cancelled delayed job that never ran, retried before its time, ran at once: its delay was lost. It keeps
    its run_after now; one retried after its time passed (or one that ran) runs at once."""
    delayed, _ = store.enqueue_job("run", "echo", {"input": "later"}, delay=3600)
    assert store.cancel_job(delayed["id"]) and store.retry_job(delayed["id"])
    assert store.claim_job("w", lease=30) is None  # not before the delay it was queued with
    assert store.get_job(delayed["id"])["run_after"] == delayed["run_after"]  # type: ignore[index]

    passed, _ = store.enqueue_job("run", "echo", {"input": "soon"}, delay=0.05)
    assert store.cancel_job(passed["id"])
    time.sleep(0.1)
    assert store.retry_job(passed["id"])
    claimed = store.claim_job("w", lease=30)
    assert claimed is not None and claimed["id"] == passed["id"]  # its time passed: runs now


def test_answers_are_counted_per_correspondent_and_hour_also_for_a_huge_address(store_factory, raw_sql) -> None:
    """``count_channel_answers`` (the email channel's max_answers_per_hour): the messages of one address that
    were accepted for an answer (a job), in the window. A 6,000-character address stored before the index
    (m020 / pg013) existed still lets it be made on PostgreSQL (an index entry is at most ~2,700 bytes)."""
    import secrets

    from halguru.store.records import ChannelMessageRecord

    store_factory().close()
    raw_sql("DROP INDEX channel_messages_address")
    raw_sql("DELETE FROM migrations WHERE name IN ('m020_channel_answers', 'pg013_channel_answers')")
    huge, now = f"{secrets.token_urlsafe(4500)}@evil.test", time.time()

    def record(store: Store, n: int, address: str, *, ago: float = 0.0, job: bool = True,
               direction: str = "in", agent: str = "help") -> None:
        store.record_channel_message(ChannelMessageRecord(
            id=f"m{n}", channel="email", agent=agent, conversation_id=None, direction=direction, address=address,
            body="hi", status="received", job_id=f"job_{n}" if job else None, created=now - ago, updated=now))

    raw_sql("INSERT INTO channel_messages (channel, id, agent, conversation_id, direction, address, body, status, "
            "job_id, created, updated) VALUES ('email', 'm0', 'help', NULL, 'in', ?, 'hi', 'received', 'job_0', ?, ?)",
            (huge, now, now))
    store = store_factory()  # upgraded: the index is made
    record(store, 1, huge)
    record(store, 2, huge[:-1])  # the same first 100 characters, another address
    record(store, 3, "ann@example.org")
    record(store, 4, "ann@example.org", ago=7200)  # before the hour
    record(store, 5, "ann@example.org", job=False)  # not answered (no job)
    record(store, 6, "ann@example.org", direction="out")
    record(store, 7, "ann@example.org", agent="sales")
    assert store.count_channel_answers("email", "help", huge, now - 3600) == 2
    assert store.count_channel_answers("email", "help", "ann@example.org", now - 3600) == 1
    assert store.count_channel_answers("email", "help", "bob@example.org", now - 3600) == 0
    assert store.count_channel_answers("email", "help", "ann@example.org", now - 3600, "hi") == 1  # said so
    assert store.count_channel_answers("email", "help", "ann@example.org", now - 3600, "hello") == 0
