"""Vector search in memory (``halguru.rag.chunk_matrix``): a process's second search of a base is answered by NumPy
over the chunks it holds, with the rows and order LanceDB gives, and a new commit is seen."""

from __future__ import annotations

import pytest

from halguru import rag
from halguru.rag.embedders import embed_queries
from halguru.rag.query import COLUMNS, build_query
from halguru.rag.store import KnowledgeBase

QUESTIONS = ["How do I install halguru?", "what does the team plan cost", "cat's name", "solar energy produced"]


def rows(found: list[dict]) -> list[tuple]:
    return [(r["source"], r["heading"], r["line_start"], r["line_end"], r["text"]) for r in found]


def test_the_second_search_is_answered_in_memory_with_lancedbs_rows_and_a_commit_is_seen(docs):
    rag.create("docs")
    rag.ingest("docs", [docs])
    kb = KnowledgeBase.cached("docs")
    model = kb.embedder()
    vectors = [embed_queries(model, [q])[0] for q in QUESTIONS]
    assert kb.nearest(vectors[0], 3, COLUMNS) is None  # the first search of this version: LanceDB answers
    for vector in vectors:
        held = kb.nearest(vector, 50, COLUMNS)
        lance = build_query(kb, "", vector, 50, "vector", None).to_list()
        assert held is not None and rows(held) == rows(lance)
        assert [r["_distance"] for r in held] == pytest.approx([r["_distance"] for r in lance], abs=1e-5)
    for question in QUESTIONS:  # in memory, and by LanceDB (a filter goes there): the same hits
        in_memory = rag.search("docs", question, k=3)
        by_lance = rag.search("docs", question, k=3, where="line_start >= 0")
        assert [h.citation for h in in_memory] == [h.citation for h in by_lance]
        assert [h.score for h in in_memory] == pytest.approx([h.score for h in by_lance], abs=1e-5)
    assert kb.nearest(vectors[0], 3, ["source", "vector"]) is None  # columns it does not hold: LanceDB

    (docs / "new.md").write_text("# Parking\n\nBicycles are parked in the courtyard behind the office.\n")
    rag.ingest("docs", [docs])  # a new table version
    where = embed_queries(model, ["where can I leave my bike"])[0]
    assert kb.nearest(where, 1, COLUMNS) is None  # its first search: LanceDB again
    assert kb.nearest(where, 1, COLUMNS)[0]["source"] == "docs/new.md"
    assert rag.search("docs", "where can I leave my bike", k=1)[0].source == "docs/new.md"
