"""A search of a base whose ingest did not finish (killed, Ctrl-C, a full disk) or runs now says which files it
cannot find yet and how to finish the job; the ingest that finishes it adds each chunk once."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from halguru import rag
from halguru.rag import indexer


def write_notes(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        (folder / f"note{i:02}.md").write_text(f"# Note {i}\n\nMeeting {i} decided topic-{i} is approved.\n")
    return folder


def test_a_search_after_a_stopped_ingest_says_what_is_missing_and_the_next_ingest_finishes(
        tmp_path: Path, monkeypatch, cli) -> None:
    folder = write_notes(tmp_path / "notes", 12)
    rag.create("notes", "wordllama")
    monkeypatch.setattr(indexer, "BATCH_CHUNKS", 4)
    real, calls = indexer.embed_passages, []

    def embed_then_interrupt(model, texts):
        calls.append(len(texts))
        if len(calls) == 2:  # Ctrl-C while the second batch is embedded: the first is committed
            raise KeyboardInterrupt
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", embed_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        rag.ingest("notes", [folder])
    monkeypatch.setattr(indexer, "embed_passages", real)

    hits = rag.search("notes", "meeting decided", k=3)
    assert hits  # searchable
    said = " ".join(hits.notes)
    assert "did not finish" in said and "8 of the 12 file(s)" in said, said
    assert f"halguru kb ingest notes {folder}" in said
    shown = cli("kb", "show", "notes").output
    assert "ingest:" in shown and "8 of the 12 file(s)" in shown

    summary = rag.ingest("notes", [folder])
    assert (len(summary.unchanged), len(summary.added)) == (4, 8)
    info = rag.open_base("notes").info()
    assert (info.documents, info.chunks, info.unfinished) == (12, 12, "")  # whole, each chunk once
    assert rag.search("notes", "meeting decided", k=3).notes == []
    assert "ingest:" not in cli("kb", "show", "notes").output


def test_a_base_whose_first_ingest_stopped_before_its_first_batch_names_the_ingest_to_run(
        tmp_path: Path, monkeypatch, cli_error) -> None:
    folder = write_notes(tmp_path / "notes", 3)
    rag.create("notes", "wordllama")

    def interrupted(model, texts):
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "embed_passages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rag.ingest("notes", [folder])
    error = cli_error("kb", "search", "notes", "meeting")
    assert "no documents yet" in error and "3 of the 3 file(s)" in error and f"kb ingest notes {folder}" in error


def test_a_search_while_another_process_ingests_says_so(tmp_path: Path, halguru_cmd, subprocess_env) -> None:
    folder = write_notes(tmp_path / "notes", 200)
    env = {**subprocess_env, "HALGURU_KB_BATCH_CHUNKS": "2"}
    subprocess.run([*halguru_cmd, "kb", "create", "notes", "--embedder", "fast"], env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen([*halguru_cmd, "kb", "ingest", "notes", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kb = rag.open_base("notes")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            kb.refresh()
            if kb.table.count_rows() >= 4:
                break
            time.sleep(0.05)
        hits = rag.search("notes", "meeting decided", k=3, mode="vector")
        assert proc.poll() is None, "the ingest ended before the search"
        assert hits and any(f"is running (pid {proc.pid})" in note for note in hits.notes), hits.notes
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    kb.refresh()
    said = " ".join(rag.search("notes", "meeting decided", k=3, mode="vector").notes)
    assert "did not finish" in said and "of the 200 file(s)" in said, said
    rag.ingest("notes", [folder])
    info = rag.open_base("notes").info()
    assert (info.documents, info.chunks, info.unfinished) == (200, 200, "")


def test_a_search_beside_an_ingest_of_this_process_says_it_runs(tmp_path: Path, monkeypatch) -> None:
    folder = write_notes(tmp_path / "notes", 8)
    rag.create("notes", "wordllama")
    monkeypatch.setattr(indexer, "BATCH_CHUNKS", 4)
    real, held, release = indexer.embed_passages, threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(model, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            held.set()
            release.wait(30)
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", slow)
    worker = threading.Thread(target=rag.ingest, args=("notes", [folder]))
    worker.start()
    try:
        assert held.wait(30)
        said = " ".join(rag.search("notes", "meeting decided", k=3).notes)
        assert "is running" in said and "4 of the 8 file(s)" in said, said
    finally:
        release.set()
        worker.join(30)
    assert rag.search("notes", "meeting decided", k=3).notes == []
