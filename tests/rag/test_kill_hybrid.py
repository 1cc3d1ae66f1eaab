"""A first ingest SIGKILLed mid-way leaves a base that the default (hybrid) search answers from, full-text
included; a base without its full-text index still answers hybrid searches (vector only, and says so)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from halguru import rag
from halguru.rag.errors import KnowledgeError


def test_sigkill_first_ingest_then_default_search_finds_by_words(tmp_path, halguru_cmd, subprocess_env):
    folder = tmp_path / "notes"
    folder.mkdir()
    notes = 400
    for i in range(notes):
        (folder / f"note{i:03}.md").write_text(f"# Note {i}\n\nMeeting {i} decided codename-{i} is approved.\n")
    env = {**subprocess_env, "HALGURU_KB_BATCH_CHUNKS": "4"}
    subprocess.run([*halguru_cmd, "kb", "create", "notes"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*halguru_cmd, "kb", "ingest", "notes", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kb = rag.open_base("notes")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        kb.refresh()
        if kb.table.count_rows() >= 12:  # three batches committed, many to go
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kb.refresh()
    partial = kb.table.count_rows()
    assert 0 < partial < notes
    # Default mode, no refusal: a word only the last committed note has is found first, by its words.
    stored = sorted(kb.documents())
    last = int(stored[-1].rsplit("note", 1)[1][:3])
    hits = rag.search("notes", f"codename-{last}", k=3)
    assert hits[0].source == f"notes/note{last:03}.md"
    # no fallback to vectors alone; what the kill left out is said
    assert [note for note in hits.notes if "did not finish" in note] == hits.notes != []
    assert rag.search("notes", f"codename-{last}", k=1, mode="fts")[0].source == f"notes/note{last:03}.md"
    # From the CLI too, in its default mode.
    out = subprocess.run([*halguru_cmd, "kb", "search", "notes", f"codename-{last}", "-k", "1"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and f"note{last:03}.md" in out.stdout, out.stderr
    summary = rag.ingest("notes", [folder])  # resumed: the rest is added, nothing twice
    assert len(summary.added) == notes - partial
    assert rag.open_base("notes").info().chunks == notes
    assert rag.search("notes", "codename-399", k=1)[0].source == "notes/note399.md"


def test_missing_full_text_index_falls_back_and_the_next_ingest_builds_it(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "parcel.md").write_text("# Parcels\n\nA parcel is tracked by its number.\n")
    (folder / "refund.md").write_text("# Refunds\n\nRefunds take five days.\n")
    rag.create("docs")
    rag.ingest("docs", [folder])
    kb = rag.open_base("docs")
    kb.table.drop_index("search_text_idx")  # what a kill between the first commit and the index leaves
    hits = rag.search("docs", "how long do refunds take", k=2)
    assert hits and "vector search only" in hits.notes[0] and "halguru kb ingest docs" in hits.notes[0]
    with pytest.raises(KnowledgeError, match="no full-text index yet"):
        rag.search("docs", "refunds", mode="fts")
    summary = rag.ingest("docs", [folder])  # nothing changed, but the missing index is built
    assert len(summary.unchanged) == 2
    hits = rag.search("docs", "refunds", k=1)
    assert hits.notes == [] and hits[0].source == "docs/refund.md"
