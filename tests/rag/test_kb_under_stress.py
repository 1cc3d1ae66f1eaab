"""Knowledge bases under stress (an outside pass): an ingest that waited through a re-index, a file name that is
not UTF-8, a full disk, and what a killed re-index leaves behind."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from halguru import rag
from halguru.rag import indexer
from halguru.rag.errors import KnowledgeError
from halguru.rag.store import base_folder, knowledge_root, list_names

CAPYBARA = "# Capybara\n\nThe capybara sleeps in the afternoon near the lagoon.\n"


def _hold_reindex(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, threading.Event]:
    """(building, waiting, release): a re-index sets ``building`` once it holds the base's lock and has built its
    new base's folder, then holds on until ``release``; an ingest that is about to wait for the lock sets
    ``waiting`` (it has opened the base and loaded its embedder by then)."""
    building, waiting, release = threading.Event(), threading.Event(), threading.Event()
    real_ingest, real_lock = indexer.ingest, indexer.ingest_lock

    def ingest(kb: Any, paths: Any, **kwargs: Any) -> Any:
        if kb.folder != base_folder(kb.name):  # the re-index's new base
            building.set()
            assert release.wait(60)
        return real_ingest(kb, paths, **kwargs)

    def ingest_lock(kb: Any, wait: bool = False, waits: bool = False, **kwargs: Any) -> Any:
        if wait:
            waiting.set()
        return real_lock(kb, wait=wait, waits=waits, **kwargs)

    monkeypatch.setattr(indexer, "ingest", ingest)
    monkeypatch.setattr(indexer, "ingest_lock", ingest_lock)
    return building, waiting, release


def _in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("new_embedder", ["wordllama:128", "wordllama:256"])
def test_an_ingest_that_waited_through_a_reindex_embeds_as_the_new_base(docs, tmp_path: Path, monkeypatch,
                                                                        new_embedder: str):
    """The tester's sequence: `kb reindex` runs, `kb ingest --wait` waits for it. The waiting ingest had loaded the
    old embedder and, once the lock was its own, wrote the old embedder's vectors into the new base (a cast error
    with another dimension; silently with the same one, wordllama:256) and put the old meta.json back."""
    real_ingest = indexer.ingest
    rag.create("s1", embedder="fast")
    rag.ingest("s1", [docs])
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "capy.md").write_text(CAPYBARA)
    building, waiting, release = _hold_reindex(monkeypatch)
    reindexing, reindex_errors = _in_thread(rag.reindex, "s1", new_embedder)
    assert building.wait(60)
    ingesting, ingest_errors = _in_thread(lambda: real_ingest("s1", [extra], wait=True))
    assert waiting.wait(60)
    release.set()
    reindexing.join(120)
    ingesting.join(120)
    assert not reindex_errors and not ingest_errors, (reindex_errors, ingest_errors)
    meta = json.loads((base_folder("s1") / "meta.json").read_text())
    assert meta["embedder"] == new_embedder  # not the waiting ingest's stale copy
    info = rag.open_base("s1").info()
    assert (info.embedder, info.documents) == (new_embedder, 6)
    hits = rag.search("s1", "Where does the capybara sleep?", k=1, mode="vector")
    assert hits[0].source == "extra/capy.md"
    assert rag.search("s1", "How much does the team plan cost?", k=1, mode="vector")[0].source == "docs/page.html"


def test_an_agents_folder_sync_that_waited_through_a_reindex_embeds_as_the_new_base(tmp_path: Path, monkeypatch):
    """A served agent's knowledge folder changed while its base was re-indexed: its sync (which always waits for
    the lock) wrote 256-dimensional vectors into the 128-dimensional base (a traceback on every run)."""
    from halguru.rag.agent import KnowledgeRetriever, forget_synced

    folder = tmp_path / "agent" / "knowledge"
    folder.mkdir(parents=True)
    (folder / "hours.md").write_text("# Hours\n\nThe museum opens at nine.\n")
    retriever = KnowledgeRetriever(["knowledge"], folder.parent, "helper", embedder="fast")
    [name] = retriever.bases()
    (folder / "capy.md").write_text(CAPYBARA)
    forget_synced()
    building, waiting, release = _hold_reindex(monkeypatch)
    reindexing, reindex_errors = _in_thread(rag.reindex, name, "wordllama:128")
    assert building.wait(60)
    syncing, sync_errors = _in_thread(retriever.bases)
    assert waiting.wait(60)
    release.set()
    reindexing.join(120)
    syncing.join(120)
    assert not reindex_errors and not sync_errors, (reindex_errors, sync_errors)
    info = rag.open_base(name).info(with_sources=True)
    assert (info.embedder, info.sources) == ("wordllama:128", ["knowledge/capy.md", "knowledge/hours.md"])
    assert rag.search(name, "Where does the capybara sleep?", k=1, mode="vector")[0].source == "knowledge/capy.md"


def test_a_base_dropped_while_an_ingest_waited_is_one_line_and_not_made_again(docs, monkeypatch):
    rag.create("gone", embedder="fast")
    kb = rag.open_base("gone")
    with indexer.ingest_lock(kb):
        rag.open_base("gone").drop()  # as `kb drop` does under the lock
        ingesting, errors = _in_thread(lambda: indexer.ingest(kb, [docs], wait=True))
    ingesting.join(60)
    assert [str(e) for e in errors] == ["knowledge base 'gone' was dropped while this ingest waited for it; "
                                        "nothing was ingested"]
    assert not base_folder("gone").exists()


LATIN1_NAME = b"caf\xe9.md"


def _latin1_folder(parent: Path) -> Path:
    folder = parent / "iso1"
    folder.mkdir(parents=True)
    (folder / "guide.md").write_text("# Guide\n\nThe office cat is called Pixel.\n")
    with open(os.path.join(os.fsencode(folder), LATIN1_NAME), "w") as handle:
        handle.write("# Latin1 name\n\nThe capybara number is 5150.\n")
    return folder


def test_a_file_name_that_is_not_utf8_is_indexed_under_a_safe_name(tmp_path: Path):
    """A Latin-1 file name (an old archive, a Windows zip) failed the whole ingest with the tokenizer's TypeError:
    its lone surrogates reached the text that is embedded."""
    folder = _latin1_folder(tmp_path)
    rag.create("h2", embedder="fast")
    summary = rag.ingest("h2", [folder])
    assert sorted(summary.added) == ["iso1/caf\\xe9.md", "iso1/guide.md"] and not summary.skipped
    hit = rag.search("h2", "capybara number", k=1)[0]
    assert (hit.source, "5150" in hit.text) == ("iso1/caf\\xe9.md", True)
    again = rag.ingest("h2", [folder], prune=True)  # the same file, found unchanged, not taken for a gone one
    assert (len(again.unchanged), again.removed, again.gone) == (2, [], [])
    assert "2 added" in rag.reindex("h2", "wordllama:128").line()  # its file is found again on disk
    os.remove(os.path.join(os.fsencode(folder), LATIN1_NAME))
    assert rag.ingest("h2", [folder], prune=True).removed == ["iso1/caf\\xe9.md"]


def test_an_agent_whose_knowledge_folder_holds_such_a_file_answers(write_agent, tmp_path: Path):
    from halguru.agents.runtime import run_sync
    from halguru.models.scripted import ScriptedModel

    project = write_agent("name: jsagent\nmodel: scripted\nknowledge: [iso1]\n"
                          "retrieval: {mode: auto, top_k: 2, embedder: fast}\n")
    _latin1_folder(project)
    model = ScriptedModel(["It is 5150 [1]."])
    result = run_sync(project, "What is the capybara number?", model=model, record=False)
    assert result.ok, result.error
    prompt = model.requests[0].messages[0].content
    assert "iso1/caf\\xe9.md" in prompt and "5150" in prompt


DISK_FULL = ("lance error: LanceError(IO): No space left on device (os error 28), /root/.cargo/registry/src/index"
             ".crates.io-1949cf8c6b5b557f/lance-file-13.0.0/src/writer/structural.rs:191:9")


def test_a_full_disk_during_ingest_is_one_line_and_the_next_ingest_finishes(docs, monkeypatch):
    from lancedb.table import LanceTable

    rag.create("f1", embedder="fast")
    monkeypatch.setattr(indexer, "BATCH_CHUNKS", 1)  # one commit per file
    real_add, adds = LanceTable.add, []

    def add(self: Any, *args: Any, **kwargs: Any) -> Any:
        adds.append(1)
        if len(adds) == 3:
            raise RuntimeError(DISK_FULL)
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(LanceTable, "add", add)
    with pytest.raises(KnowledgeError) as failed:
        rag.ingest("f1", [docs])
    kept = rag.open_base("f1").info()
    assert kept.documents == 2
    assert str(failed.value) == (
        f"writing to knowledge base 'f1' failed at file 3 of 5: No space left on device (os error 28); the "
        f"{kept.chunks} chunk(s) written before are kept and searchable. Make room (or fix the cause) and run the "
        "same ingest again to finish: unchanged files are skipped")
    monkeypatch.setattr(LanceTable, "add", real_add)
    summary = rag.ingest("f1", [docs])
    assert (len(summary.added), len(summary.unchanged)) == (3, 2)
    assert rag.open_base("f1").info().documents == 5


def test_a_full_disk_during_optimize_is_one_line(docs, monkeypatch, cli):
    from lancedb.table import LanceTable

    rag.create("f1", embedder="fast")
    rag.ingest("f1", [docs])

    def full(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LanceTable, "optimize", full)
    result = cli("kb", "optimize", "f1", code=1)
    assert str(result.exception) == ("optimizing knowledge base 'f1' failed: No space left on device; it is "
                                     "unchanged and still searchable. Make room (or fix the cause) and run "
                                     "`halguru kb optimize f1` again")
    assert rag.search("f1", "refunds", k=1)[0].source == "docs/faq.txt"


def _leftovers(name: str) -> list[Path]:
    """What a re-index killed half-way leaves: its new base half built, beside the base."""
    leftover = knowledge_root() / f".{name}.reindexing"
    (leftover / "chunks.lance").mkdir(parents=True)
    (leftover / "chunks.lance" / "data.lance").write_bytes(b"\0" * 4096)
    return [leftover]


def test_drop_removes_a_killed_reindexs_leftovers_and_list_does_not_show_them(docs, cli):
    rag.create("rx", embedder="fast")
    rag.ingest("rx", [docs])
    [leftover] = _leftovers("rx")
    assert list_names() == ["rx"] and "reindexing" not in cli("kb", "list").output
    cli("kb", "drop", "rx", "--yes")
    assert not leftover.exists() and list_names() == []


def test_an_ingest_or_reindex_of_the_name_clears_them(docs):
    rag.create("rx", embedder="fast")
    [leftover] = _leftovers("rx")
    rag.ingest("rx", [docs])
    assert not leftover.exists()
    [leftover] = _leftovers("rx")
    rag.reindex("rx", "wordllama:128")
    assert not leftover.exists() and rag.open_base("rx").info().documents == 5
