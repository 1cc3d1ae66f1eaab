"""Ctrl-C during a knowledge ingest (an agent's first retrieval, or `kb ingest`) says what happened and exits."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

WORDS = ["cat", "dog", "bike", "price", "open", "shop", "road", "rain", "tea", "map"]


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """Enough text that indexing it takes a few seconds."""
    folder = tmp_path / "proj" / "notes"
    folder.mkdir(parents=True)
    rng = random.Random(7)
    for i in range(300):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + " ".join(rng.choice(WORDS) for _ in range(3000)))
    (folder.parent / "agent.yaml").write_text(
        "name: kb\nmodel: scripted\nknowledge: [notes]\nretrieval: {mode: auto, top_k: 3, embedder: fast}\n")
    return folder


def interrupt_when_indexing(argv: list[str], env: dict[str, str], lock: Path,
                            after: float = 0.3) -> tuple[subprocess.Popen, str, float]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().startswith("pid")):  # the ingest holds its lock
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the ingest never started"
            time.sleep(0.02)
        time.sleep(after)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        return proc, err, time.monotonic() - sent
    finally:
        proc.kill()


def test_ctrl_c_during_an_agents_first_ingest_says_how_far_it_got(notes, halguru_cmd, subprocess_env,
                                                                  halguru_home):
    lock = halguru_home / "knowledge" / ".locks" / "kb-notes.lock"
    proc, err, took = interrupt_when_indexing([*halguru_cmd, "run", str(notes.parent), "what is the price"],
                                              subprocess_env, lock)
    assert proc.returncode == 130, err
    assert took < 5, f"it took {took:.1f}s to stop"
    assert "Traceback" not in err
    assert "Indexing knowledge base 'kb-notes' stopped after" in err and "of 300 file(s)" in err, err
    assert "the next run indexes the rest" in err
    # and the next run does: it finishes the base and answers
    done = subprocess.run([*halguru_cmd, "run", str(notes.parent), "what is the price"], capture_output=True,
                          text=True, env=subprocess_env, timeout=120)
    assert done.returncode == 0, done.stderr
    from halguru import rag

    assert rag.open_base("kb-notes").info().documents == 300


def test_ctrl_c_during_kb_ingest_says_what_is_kept(notes, halguru_cmd, subprocess_env, halguru_home):
    assert subprocess.run([*halguru_cmd, "kb", "create", "docs"], env=subprocess_env, timeout=60).returncode == 0
    lock = halguru_home / "knowledge" / ".locks" / "docs.lock"
    proc, err, _ = interrupt_when_indexing([*halguru_cmd, "kb", "ingest", "docs", str(notes)], subprocess_env, lock,
                                           after=1.5)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "Stopped at file" in err and "of 300" in err and "Run the same command again" in err, err
    # which files that means: those read but not yet written are not in the base
    assert "file(s) it was adding are not in the base yet" in err, err


async def test_chat_stops_the_ingest_its_answer_started(notes, halguru_home):
    import asyncio
    import contextlib

    from halguru.cli.chat_repl import ChatRepl

    repl = ChatRepl.open(notes.parent, conversation=None, model=None)
    lock = halguru_home / "knowledge" / ".locks" / "kb-notes.lock"
    task = asyncio.create_task(repl.answer("what is the price"))
    try:
        for _ in range(3000):
            if lock.exists() and lock.read_text().startswith("pid"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        task.cancel()  # what asyncio.Runner does on Ctrl-C
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await repl.session.close()
    [line] = repl.stopped_ingests
    assert line.startswith("indexing knowledge base 'kb-notes' stopped after") and "of 300 file(s)" in line


def test_a_stopped_ingest_stops_within_a_few_chunks_and_leaves_a_searchable_base(tmp_path: Path, halguru_home,
                                                                               monkeypatch) -> None:
    """Esc in `halguru dev` during an agent's first ingest waited for the batch being embedded (128 chunks, up to
    10 s on a slow machine), then embedded what was pending before it stopped: the chat said nothing, and quitting
    waited. It stops between a few chunks now; the base holds whole files, searchable, and the next ingest
    finishes it."""
    import threading

    from halguru import rag
    from halguru.rag import indexer

    folder = tmp_path / "notes"
    folder.mkdir()
    rng = random.Random(3)
    for i in range(40):
        (folder / f"n{i}.md").write_text(f"# Note {i}\n\n" + " ".join(rng.choice(WORDS) for _ in range(2000)))
    rag.create("slow", "fast")
    real, embedded, count = indexer.embed_passages, threading.Event(), [0]

    def slow(model, texts):
        count[0] += len(texts)
        if count[0] > indexer.BATCH_CHUNKS:  # the first batch is written: the second is being embedded
            embedded.set()
        time.sleep(0.02 * len(texts))  # 2.6 s a batch of 128 chunks
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", slow)
    scope: list[indexer.IngestScope] = []
    failed: list[BaseException] = []

    def ingest() -> None:
        scope.append(indexer.IngestScope.enter())
        try:
            rag.ingest("slow", [folder])
        except indexer.IngestStopped as exc:
            failed.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    assert embedded.wait(60)
    time.sleep(0.1)
    started = time.monotonic()
    [line] = scope[0].stop(wait=30)
    took = time.monotonic() - started
    worker.join(30)
    assert failed and took < 1.0, f"the stop took {took:.1f} s"
    kept = rag.open_base("slow").info().documents
    assert 0 < kept < 40 and f"stopped after {kept} of 40 file(s)" in line  # the batch under way was dropped
    assert rag.search("slow", "price tea", k=3)  # searchable as it is
    monkeypatch.setattr(indexer, "embed_passages", real)
    summary = rag.ingest("slow", [folder])
    assert len(summary.added) == 40 - kept and len(summary.unchanged) == kept
    assert rag.open_base("slow").info().documents == 40 and rag.search("slow", "price tea", k=3)
