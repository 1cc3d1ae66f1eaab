"""Search a knowledge base: vector, full-text (BM25) or hybrid (both, fused by reciprocal rank fusion)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from halguru.rag.errors import KnowledgeError
from halguru.rag.store import KnowledgeBase

Mode = Literal["vector", "fts", "hybrid"]
MODES = ("vector", "fts", "hybrid")
COLUMNS = ["source", "heading", "line_start", "line_end", "text"]


@dataclass
class Hit:
    source: str
    heading: str
    lines: str  # "12-30"
    score: float  # higher is better: cosine similarity, BM25, or RRF score
    text: str
    knowledge_base: str = ""

    @property
    def citation(self) -> str:
        """``docs/guide.md#Install`` (the innermost heading), or the bare source."""
        inner = self.heading.split(" > ")[-1] if self.heading else ""
        return f"{self.source}#{inner}" if inner else self.source

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "citation": self.citation}


def _fts_text(query: str) -> str:
    # Tantivy's query parser treats quotes, colons and operators specially; a user's question is plain words.
    return " ".join(re.findall(r"\w+", query)) or query


def build_query(kb: KnowledgeBase, query: str, vector: list[float] | None, k: int, mode: Mode,
                where: str | None) -> Any:
    """The LanceDB query for ``mode``: also what the benchmark issues directly, as the baseline."""
    table = kb.table
    if mode == "vector":
        q = table.search(vector, query_type="vector").distance_type("cosine")
    elif mode == "fts":
        q = table.search(_fts_text(query), query_type="fts")
    else:
        from lancedb.rerankers import RRFReranker

        q = (table.search(query_type="hybrid").vector(vector).text(_fts_text(query)).distance_type("cosine")
             .rerank(RRFReranker()))
    if where:
        q = q.where(where, prefilter=True)
    scores = {"vector": ["_distance"], "fts": ["_score"], "hybrid": []}[mode]
    return q.select(COLUMNS + scores).limit(k)


def fuse(vector_rows: list[dict[str, Any]], fts_rows: list[dict[str, Any]], k: int,
         constant: int = 60) -> list[dict[str, Any]]:
    """Reciprocal rank fusion; ties (one list's #n against the other's #n) go to the full-text match,
    whose exact words are the stronger evidence with a small embedder."""
    fused: dict[tuple[str, int, str], dict[str, Any]] = {}
    for weight, rows in ((1.0, vector_rows), (1.0 + 1e-6, fts_rows)):
        for rank, row in enumerate(rows, 1):
            key = (row["source"], row["line_start"], row["text"][:64])
            entry = fused.setdefault(key, {**row, "_relevance_score": 0.0})
            entry["_relevance_score"] += weight / (constant + rank)
    return sorted(fused.values(), key=lambda r: -r["_relevance_score"])[:k]


def search(kb: KnowledgeBase | str, query: str, k: int = 5, mode: Mode = "hybrid", where: str | None = None,
           embedder: str | None = None) -> list[Hit]:
    """The ``k`` best chunks for ``query``; raises KnowledgeError on an empty base or a bad ``where``."""
    if isinstance(kb, str):
        kb = KnowledgeBase.cached(kb)
    if mode not in MODES:
        raise KnowledgeError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    if not query.strip():
        raise KnowledgeError("empty query")
    if k < 1:
        raise KnowledgeError("k must be at least 1")
    model = kb.embedder(embedder)
    vector = model.embed([query])[0] if mode != "fts" else None
    try:
        if mode == "hybrid":
            depth = max(k * 2, 20)
            rows = fuse(build_query(kb, query, vector, depth, "vector", where).to_list(),
                        build_query(kb, query, vector, depth, "fts", where).to_list(), k)
        else:
            rows = build_query(kb, query, vector, k, mode, where).to_list()
    except Exception as exc:  # LanceDB reports SQL errors as ValueError/RuntimeError with long text
        if kb.table.count_rows() == 0:  # an empty base has no full-text index yet either
            raise KnowledgeError(
                f"knowledge base {kb.name!r} has no documents yet, run halguru kb ingest {kb.name} PATH") from None
        if where and ("parsing" in str(exc).lower() or "sql" in str(exc).lower() or "schema" in str(exc).lower()
                      or "column" in str(exc).lower() or isinstance(exc, ValueError)):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KnowledgeError(f"bad --where {where!r}: {first[:200]}") from None
        if mode != "vector" and "index" in str(exc).lower():
            raise KnowledgeError(f"knowledge base {kb.name!r} has no full-text index yet; "
                                 f"run halguru kb ingest {kb.name} PATH") from None
        raise
    if not rows and kb.table.count_rows() == 0:  # checked only when nothing was found: one query less
        raise KnowledgeError(f"knowledge base {kb.name!r} has no documents yet, run halguru kb ingest {kb.name} PATH")
    hits = []
    for row in rows:
        if "_relevance_score" in row:
            score = float(row["_relevance_score"])
        elif "_distance" in row:
            score = 1.0 - float(row["_distance"])
        else:
            score = float(row.get("_score", 0.0))
        hits.append(Hit(row["source"], row["heading"], f"{row['line_start']}-{row['line_end']}", round(score, 6),
                        row["text"], kb.name))
    return hits
