"""A document's lead (its first chunk: a man page's NAME, a guide's opening section) votes for all of its chunks in
hybrid search: of two equally good passages, the one from the page that is about the question comes first."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np

from halguru import rag
from halguru.rag import query
from halguru.rag.query import Fusion, fuse, lead_vectors
from halguru.rag.store import KnowledgeBase


def _row(source: str, vector: list[float], bm25: float) -> dict[str, object]:
    return {"source": source, "heading": "OPTIONS > -f", "line_start": 9, "line_end": 12, "text": "-f  follow",
            "vector": vector, "_score": bm25, "_distance": 0.0}


def test_the_page_whose_lead_matches_the_question_wins_a_tie():
    question = [1.0, 0.0]
    passage = [math.cos(0.5), math.sin(0.5)]  # the same passage, word for word, in two pages
    rows = [_row("a-logger.txt", passage, 3.0), _row("b-tail.txt", passage, 3.0)]
    leads = {"a-logger.txt": [0.0, 1.0], "b-tail.txt": [1.0, 0.0]}  # tail's NAME line is what was asked
    plain = fuse(rows, rows, 2, Fusion(lead_weight=0.0), question, leads)
    voted = fuse(rows, rows, 2, Fusion(lead_weight=0.5), question, leads)
    assert [r["source"] for r in plain] == ["a-logger.txt", "b-tail.txt"]  # a tie: by name
    assert [r["source"] for r in voted] == ["b-tail.txt", "a-logger.txt"]
    assert voted[0]["_relevance_score"] > voted[1]["_relevance_score"]
    # A source file has no lead (its first chunk is a licence and imports): its best chunk stands in for it, so
    # next to pages it is neither favoured nor left behind.
    mixed = fuse([*rows, _row("c-follow.py", passage, 3.0)], rows, 3, Fusion(lead_weight=0.5), question, leads)
    assert [r["source"] for r in mixed] == ["b-tail.txt", "c-follow.py", "a-logger.txt"]


def test_leads_are_each_documents_first_chunk_and_search_uses_them(tmp_path: Path, monkeypatch):
    folder = tmp_path / "pages"
    folder.mkdir()
    body = "\n\n".join(f"SECTION {i}\n       Paragraph {i} about option {i} and what it does." for i in range(40))
    (folder / "tail.txt").write_text("NAME\n       tail - output the last part of files\n\n" + body)
    (folder / "it's.txt").write_text("NAME\n       quoting - a page whose name has a quote\n\n" + body)
    rag.create("pages", "fast")
    rag.ingest("pages", [folder])
    kb = rag.open_base("pages")
    stored = kb.table.to_arrow().select(["source", "chunk_index", "vector"]).to_pylist()
    assert max(r["chunk_index"] for r in stored) > 1  # several chunks per page
    leads = lead_vectors(kb, [{"source": "pages/tail.txt"}, {"source": "pages/it's.txt"}])
    firsts = {r["source"]: r["vector"] for r in stored if r["chunk_index"] == 0}
    assert set(leads) == {"pages/tail.txt", "pages/it's.txt"}
    assert all(list(leads[s]) == list(firsts[s]) for s in leads)
    hits = rag.search("pages", "show the last lines of a file", k=3,
                      fusion=Fusion(fts_weight=0.2, doc_weight=0.1, lead_weight=0.5))
    assert hits[0].source == "pages/tail.txt"
    # The document rank fusion fetches the leads too, even with no lead vote in the mixed score.
    fetched: list[int] = []
    monkeypatch.setattr(query, "lead_vectors", lambda kb, rows: fetched.append(len(rows)) or lead_vectors(kb, rows))
    ranked = rag.search("pages", "show the last lines of a file", k=3,
                        fusion=Fusion(fts_weight=0.2, lead_weight=0.0, doc_rank_constant=10))
    assert ranked[0].source == "pages/tail.txt" and fetched


def test_the_leads_kept_in_memory_follow_every_commit_even_another_processes(tmp_path: Path, halguru_cmd: list[str],
                                                                           subprocess_env: dict[str, str]):
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "tail.txt").write_text("NAME\n       tail - output the last part of files\n")
    rag.create("live", "fast")
    rag.ingest("live", [folder])
    kb = KnowledgeBase.cached("live")  # what searches use: one open base per process
    before = {source: np.array(vector) for source, vector in kb.leads().items()}
    assert set(before) == {"pages/tail.txt"}
    (folder / "tail.txt").write_text("NAME\n       tail - print the end of a log as it grows\n")
    (folder / "head.txt").write_text("NAME\n       head - output the first part of files\n")
    done = subprocess.run([*halguru_cmd, "kb", "ingest", "live", str(folder)], env=subprocess_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = KnowledgeBase.cached("live").leads()
    assert set(after) == {"pages/tail.txt", "pages/head.txt"}  # the other process's commit is seen at once
    assert not np.allclose(after["pages/tail.txt"], before["pages/tail.txt"])  # the changed page's new lead
    hits = rag.search("live", "show the first lines of a file", k=2)
    assert hits[0].source == "pages/head.txt"


def test_document_rank_fusion_prefers_the_page_good_on_every_list_to_one_lucky_chunk():
    question = [1.0, 0.0]

    def at(angle: float) -> list[float]:
        return [math.cos(angle), math.sin(angle)]

    # "lucky.txt" has one chunk that is closest to the question and no other support; "steady.txt" is second by
    # cosine, first by BM25 and by its lead; "other.txt" is third everywhere.
    vector_rows = [_row("lucky.txt", at(0.1), 0.0), _row("steady.txt", at(0.3), 0.0),
                   _row("other.txt", at(0.6), 0.0)]
    for row, distance in zip(vector_rows, (0.1, 0.3, 0.6), strict=True):
        row["_distance"] = 1 - math.cos(distance)
    fts_rows = [_row("steady.txt", at(0.3), 5.0), _row("other.txt", at(0.6), 4.0)]
    leads = {"lucky.txt": at(1.2), "steady.txt": at(0.2), "other.txt": at(0.9)}
    mixed = Fusion(fts_weight=0.1, lead_weight=0.05)
    plain = fuse(vector_rows, fts_rows, 3, mixed, question, leads)
    assert plain[0]["source"] == "lucky.txt"  # the mixed score follows the one large cosine
    ranked = fuse(vector_rows, fts_rows, 3, Fusion(fts_weight=0.1, lead_weight=0.05, doc_rank_constant=10),
                  question, leads)
    # 2/(10+rank) for the fused list, 1/(10+rank) for each other list the page is on: a page missing from the
    # full-text list (lucky) falls behind one that is third on all of them.
    assert [r["source"] for r in ranked] == ["steady.txt", "other.txt", "lucky.txt"]
    scores = [r["_relevance_score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)  # hits report their document's fused rank, best first
    # Leads of documents that are not candidates rank nothing: the result does not depend on how many were fetched.
    more = {**leads, **{f"absent-{i}.txt": at(0.0) for i in range(5)}}
    again = fuse(vector_rows, fts_rows, 3, Fusion(fts_weight=0.1, lead_weight=0.05, doc_rank_constant=10),
                 question, more)
    assert [(r["source"], r["_relevance_score"]) for r in again] == list(zip(
        [r["source"] for r in ranked], scores, strict=True))


def _passage(source: str, angle: float, bm25: float) -> dict[str, object]:
    return {**_row(source, [math.cos(angle), math.sin(angle)], bm25), "_distance": 1.0 - math.cos(angle)}


def test_a_full_text_match_far_ahead_of_the_rest_is_not_outvoted_by_the_vectors():
    """The issue's case: BM25 38.4 for the page that names what was asked, 24.5 for the next; the vectors prefer
    another page a little. A clear lexical winner gets more of the say; words found everywhere (scores close
    together) leave the vectors theirs."""
    question = [1.0, 0.0]
    rows = [_passage("a-rss.txt", 0.5, 38.4), _passage("b-memory.txt", 0.4, 24.5), _passage("c-free.txt", 0.9, 20.0)]
    fixed = fuse(rows, rows, 3, Fusion(fts_weight=0.2), question)
    adaptive = fuse(rows, rows, 3, Fusion(fts_weight=0.2, fts_gap=0.4), question)
    assert [r["source"] for r in fixed][:2] == ["b-memory.txt", "a-rss.txt"]
    assert [r["source"] for r in adaptive][:2] == ["a-rss.txt", "b-memory.txt"]
    close = [_passage("a-rss.txt", 0.5, 25.0), _passage("b-memory.txt", 0.4, 24.5), _passage("c-free.txt", 0.9, 20.0)]
    first = fuse(close, close, 3, Fusion(fts_weight=0.2, fts_gap=0.4), question)[0]
    assert first["source"] == "b-memory.txt"
    assert query.default_fusion("minilm", "mpnet").fts_gap == 0.4
    assert query.default_fusion("wordllama").fts_gap == 0.0
