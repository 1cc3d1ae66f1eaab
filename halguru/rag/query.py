"""Search a knowledge base: vector, full-text (BM25) or hybrid (both, fused by score).

Hybrid search takes a fixed pool of candidates from each side (``CANDIDATES`` chunks, or ``k`` if larger), so
the first results do not depend on how many were asked for: the top 5 of ``-k 5`` are the top 5 of ``-k 50``.
Each candidate is scored on both sides where it can be: a full-text candidate's cosine similarity is computed
from its stored vector, so a chunk found by one list is not at a loss for being missed by the other. The two
scores are normalised over the pool (min-max) and mixed with the weight of ``Fusion`` chosen on the dev splits of
scripts/bench/bench_kb.py for the base's embedder (``default_fusion``), so a full-text match far ahead of the
rest keeps its lead (equal-weight reciprocal rank fusion, the former default, let a weak vector list outvote it).
The full-text score is divided by the best one in the pool, the cosine is min-max normalised. The full-text share
grows with how far its best document is ahead of its second (``fts_gap``: BM25 38.4 against 24.5 for the next is a
clear lexical answer; scores a few percent apart are not). Two document-level
votes follow: a share of the best other candidate chunk of the same document (``doc_weight``), and a share of
the question's similarity to the document's lead, its first chunk (``lead_weight``: a man or pydoc page's NAME,
a guide's opening section: what the page says it is about), min-max normalised over the candidate documents.
A base with a lead model (all-mpnet-base-v2, ``halguru.rag.mpnet``: new minilm bases where its weights are
installed) stored that model's vector of each lead at ingest, and the question is embedded by it too, beside
the rest of the search; other bases use the lead chunk's own vector. The leads' stored vectors are kept in memory
per table version (``KnowledgeBase.leads``; a source file's lead is its best candidate chunk: its first is a
licence and imports). Optionally (off by default:
see ``DOC_RANK_CONSTANTS``) the documents are then put in order by reciprocal rank fusion of four document-level lists
(``Fusion.doc_rank_constant``): by their best fused chunk (counted twice), by their best chunk's cosine similarity,
by their best chunk's BM25 score, and by their lead similarity; a document that is second or third on every list
then beats one that is first on one list by a single large score. Each document's chunks keep their fused order,
and each document's best chunk comes before its second one (``per_source``): the first results are as many
documents as possible, the other chunks of each follow.

The question is embedded on background threads (by the embedder, and by the lead model) while the table is
opened and the full-text query runs (each ~10-15 ms on 5,800 chunks; in a new process, loading the models and
importing LanceDB overlap too).

A base whose full-text index is missing (a first ingest killed before it was built) is still searched: hybrid
falls back to vector search and says so in ``Hits.notes``; full-text search raises a clear error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from halguru.rag.chunk_matrix import COLUMNS
from halguru.rag.embedders import embed_queries
from halguru.rag.errors import KnowledgeError
from halguru.rag.store import KnowledgeBase
from halguru.storable import storable

Mode = Literal["vector", "fts", "hybrid"]
MODES = ("vector", "fts", "hybrid")
Key = tuple[str, int, str]  # (source, first line, start of text): one chunk
CANDIDATES = 50  # per side in hybrid search, whatever k is (up to k itself when k is larger)


@dataclass(frozen=True)
class Fusion:
    """How hybrid search mixes its two lists: ``score`` (normalised, weighted) or ``rrf`` (reciprocal rank)."""

    method: Literal["score", "rrf"] = "score"
    fts_weight: float = 0.3  # share of the full-text side, the vector side gets the rest (chosen on the dev splits)
    constant: int = 60  # RRF only
    doc_weight: float = 0.0  # share of the best other chunk of the same document added to a chunk's score
    per_source: int = 1  # a document's chunks past this many wait until every other candidate is placed (0: off)
    lead_weight: float = 0.0  # share of the question's similarity to the document's lead (its first chunk)
    doc_rank_constant: int = 0  # documents placed by rank fusion of document-level lists, with this constant (0: off)
    doc_rank_fused: float = 2.0  # the weight of the list by best fused chunk in that fusion (the others count 1)
    fts_gap: float = 0.0  # added to fts_weight times the full-text side's lead: (best - second document) / best


LAID_OUT = {"html", "pdf", "man"}  # kinds read through a layout: a chunk's lines are not the file's
MAX_K = 10_000  # hits a search returns at most (LanceDB takes k as a 32-bit count)

DEFAULT_FUSION = Fusion()
# The full-text share that scored best on the dev splits, per embedder: a transformer's vectors understand
# paraphrase, so they get more of the say than static ones (which the full-text side has to make up for).
FTS_WEIGHTS = {"minilm": 0.2, "sentence-transformers": 0.2}
DOC_WEIGHTS = {"minilm": 0.1, "sentence-transformers": 0.1}
# The full-text share grows by this times the lead of its best document over its second (``_fts_lead``): chosen on
# the dev splits (0.3-0.6 alike; 0.4 raised MRR@10 on man pages, info manuals and Markdown by 0.02 and lost no
# question's top 5 on any set; 0.5 and more lost one on HTML). Not measured for wordllama: off.
FTS_GAP_WEIGHTS = {"minilm": 0.4, "sentence-transformers": 0.4}
# The document's lead (first chunk) vote, chosen on the dev splits for minilm: +0.04-0.05 MRR on man pages and
# pydoc (source files get no vote: see lead_vectors). For wordllama it helped man pages and pydoc on dev but cost
# code 0.07 MRR: off.
LEAD_WEIGHTS = {"minilm": 0.5, "sentence-transformers": 0.5}
# A base with a lead model (``KnowledgeMeta.lead_model``) has the vote cast by it, with this weight instead (chosen
# on the dev splits: all-mpnet-base-v2 at 0.8 raised MRR@10 on all four text sets, man pages 0.72 -> 0.79).
LEAD_MODEL_WEIGHTS = {"mpnet": 0.8}
# Documents put in order by rank fusion of document-level lists (``doc_rank_constant``) is off by default: with
# constant 10 it raised MRR@10 on every dev split by 0.01-0.02 (man pages 0.72 -> 0.74) but lowered it on three
# test splits (man 0.73 -> 0.72, info manuals 0.68 -> 0.64, pydoc 0.78 -> 0.75): within the noise of ~28
# questions a split. scripts/bench/bench_kb.py reports it on every run.
DOC_RANK_CONSTANTS: dict[str, int] = {}


def default_fusion(embedder: str, lead_model: str = "") -> Fusion:
    """How hybrid search mixes its lists for a base built with ``embedder`` (its name, without the argument) and
    ``lead_model``."""
    name = embedder.partition(":")[0]
    lead = LEAD_MODEL_WEIGHTS.get(lead_model) if lead_model else None
    return Fusion(fts_weight=FTS_WEIGHTS.get(name, DEFAULT_FUSION.fts_weight),
                  doc_weight=DOC_WEIGHTS.get(name, DEFAULT_FUSION.doc_weight),
                  lead_weight=lead if lead is not None else LEAD_WEIGHTS.get(name, DEFAULT_FUSION.lead_weight),
                  doc_rank_constant=DOC_RANK_CONSTANTS.get(name, DEFAULT_FUSION.doc_rank_constant),
                  fts_gap=FTS_GAP_WEIGHTS.get(name, DEFAULT_FUSION.fts_gap))


@dataclass
class Hit:
    source: str
    heading: str
    lines: str  # "12-30"
    score: float  # higher is better: cosine similarity, BM25, or the fused score
    text: str
    knowledge_base: str = ""

    @property
    def citation(self) -> str:
        """``docs/guide.md#Install`` (the innermost heading), or the bare source."""
        inner = self.heading.split(" > ")[-1] if self.heading else ""
        return f"{self.source}#{inner}" if inner else self.source

    @property
    def file_lines(self) -> str:
        """``lines``, where they are the file's: "" for a document read through a layout (HTML, PDF, a man
        page's troff source), whose line numbers count the text it was laid out as, not the file's lines."""
        from halguru.rag.loaders import kind_of

        return "" if kind_of(Path(self.source)) in LAID_OUT else self.lines

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "citation": self.citation}


class Hits(list[Hit]):
    """The hits of one search, best first, with ``notes`` on how it was answered (e.g. a fallback)."""

    def __init__(self, hits: list[Hit] | None = None, notes: list[str] | None = None):
        super().__init__(hits or [])
        self.notes = notes or []


def _fts_text(query: str) -> str:
    # Tantivy's query parser treats quotes, colons and operators specially; a user's question is plain words.
    return " ".join(re.findall(r"\w+", query)) or query


def build_query(kb: KnowledgeBase, query: str, vector: list[float] | None, k: int, mode: Mode,
                where: str | None, columns: list[str] | None = None) -> Any:
    """The LanceDB query for one side ("vector" or "fts"): also what the benchmark issues directly."""
    table = kb.table
    if mode == "vector":
        q = table.search(vector, query_type="vector").distance_type("cosine")
    elif mode == "fts":
        q = table.search(_fts_text(query), query_type="fts")
    else:
        raise ValueError("hybrid search is two queries, fused by fuse()")
    if where:
        # parenthesised: DataFusion stops at the end of an expression and ignores what follows ("x = 1 garbage",
        # "1=1; DROP TABLE t"), so a mistyped filter would quietly change the results; inside ( ) it is an error
        q = q.where(f"({where})", prefilter=True)
    scores = {"vector": ["_distance"], "fts": ["_score"]}[mode]
    return q.select((columns or COLUMNS) + scores).limit(k)


def _key(row: dict[str, Any]) -> tuple[str, int, str]:
    return (row["source"], row["line_start"], row["text"][:64])


def _normalised(values: dict[tuple[str, int, str], float]) -> dict[tuple[str, int, str], float]:
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    span = high - low
    return {key: (v - low) / span if span > 0 else 1.0 for key, v in values.items()}


def _diversified(order: list[Key], per_source: int) -> list[Key]:
    """``order`` with each document's chunks past the first ``per_source`` moved after all the others."""
    seen: dict[str, int] = {}
    first: list[Key] = []
    later: list[Key] = []
    for key in order:
        seen[key[0]] = seen.get(key[0], 0) + 1
        (first if seen[key[0]] <= per_source else later).append(key)
    return first + later


# Sections that say who wrote a page, its licence or where else to look, and chunks of a few words (a NAME line, a
# SYNOPSIS): never the passage that answers a question, but short, so such a chunk is mostly its label (the page's
# name and title, which it repeats) and comes out the page's most similar chunk ("sort lines numerically" -> sort's
# COPYRIGHT). A page's other candidates are shown first.
THIN_TOKENS = 20
THIN_CHARS = 640  # longer texts hold 20 tokens (a token weighs more past 31 characters): not counted, for speed
BACK_MATTER = frozenset({"author", "authors", "copyright", "see also", "reporting bugs", "colophon", "license",
                         "licence", "copying", "credits", "acknowledgements", "acknowledgments", "thanks"})


def _content_first(order: list[Key], rows: dict[Key, dict[str, Any]]) -> list[Key]:
    """``order`` with each document's back-matter and thin chunks after its other chunks, in the places its chunks
    had: which documents come where is unchanged, only which of a document's chunks stands for it."""
    from halguru.rag.chunking import count_tokens

    def back(key: Key) -> bool:
        heading = str(rows[key].get("heading") or "")
        text = str(rows[key].get("text") or "")
        return (any(part.strip().lower() in BACK_MATTER for part in heading.split(" > "))
                or (len(text) < THIN_CHARS and count_tokens(text) < THIN_TOKENS))

    chunks: dict[str, list[Key]] = {}
    for key in order:
        chunks.setdefault(key[0], []).append(key)
    queue = {source: [k for k in keys if not back(k)] + [k for k in keys if back(k)] for source, keys in chunks.items()}
    return [queue[key[0]].pop(0) for key in order]


def _with_document_support(scored: dict[Key, float], weight: float) -> dict[Key, float]:
    """Add to each chunk ``weight`` times the score of the best other candidate from its document: a page
    that several candidates come from is likelier to be the answer than one with a single lucky chunk."""
    best: dict[str, list[float]] = {}
    for (source, _, _), value in scored.items():
        best.setdefault(source, []).append(value)
    tops = {source: sorted(values, reverse=True)[:2] for source, values in best.items()}
    out = {}
    for key, value in scored.items():
        top = tops[key[0]]
        other = top[1] if len(top) > 1 and value == top[0] else (top[0] if len(top) > 1 else 0.0)
        out[key] = value + weight * other
    return out


def lead_vectors(kb: KnowledgeBase, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The vector of the first chunk of each document that ``rows`` come from (``KnowledgeBase.leads``). Source
    files have none: their first chunk is mostly a licence and imports (their vote cost code MRR 0.04 on dev)."""
    from halguru.rag.loaders import kind_of

    sources = {row["source"] for row in rows}
    if not sources:
        return {}
    leads = kb.leads()
    return {source: leads[source] for source in sources if source in leads and kind_of(Path(source)) != "code"}


def _lead_similarity(leads: dict[str, Any], query_vector: list[float],
                     cosine: dict[Key, float]) -> dict[str, float]:
    """Each candidate document's lead similarity to the question. A document without a lead (a source file) is
    judged by its best candidate chunk instead, so that in a base of both it is neither favoured nor left behind."""
    import numpy as np

    q = np.asarray(query_vector, dtype="float32")
    similarity: dict[str, float] = {}
    for key, value in cosine.items():
        if key[0] not in leads:
            similarity[key[0]] = max(value, similarity.get(key[0], -1.0))
    for source, vector in leads.items():
        similarity[source] = float(np.dot(q, np.asarray(vector, dtype="float32")))
    return similarity


def _with_lead(scored: dict[Key, float], weight: float, similarity: dict[str, float]) -> dict[Key, float]:
    """Add to each chunk ``weight`` times its document's lead similarity, min-max normalised over the documents:
    what a page says it is about (a man page's NAME, a guide's opening) votes for every chunk of it."""
    candidates = {key[0] for key in scored}
    lead = _normalised({(source, 0, ""): value for source, value in similarity.items() if source in candidates})
    return {key: value + weight * lead.get((key[0], 0, ""), 0.0) for key, value in scored.items()}


def _fts_lead(bm25: dict[Key, float]) -> float:
    """How far the full-text side's best document is ahead of its second: (best - second) / best, over each
    document's best chunk (0 with fewer than two documents). A question whose words single out one page gets
    0.3-0.5; one whose words are everywhere, a few hundredths."""
    best = sorted(_best_per_document(bm25).values(), reverse=True)
    return (best[0] - best[1]) / best[0] if len(best) > 1 and best[0] > 0 else 0.0


def _best_per_document(values: dict[Key, float]) -> dict[str, float]:
    best: dict[str, float] = {}
    for (source, _, _), value in values.items():
        best[source] = max(value, best.get(source, value))
    return best


def _document_ranks(lists: list[tuple[float, dict[str, float]]], constant: int) -> dict[str, float]:
    """Reciprocal rank fusion of document-level lists (weight, document -> score): each document gets
    weight / (constant + its rank) from every list it is on."""
    fused: dict[str, float] = {}
    for weight, values in lists:
        for rank, source in enumerate(sorted(values, key=lambda s: (-values[s], s)), 1):
            fused[source] = fused.get(source, 0.0) + weight / (constant + rank)
    return fused


def fuse(vector_rows: list[dict[str, Any]], fts_rows: list[dict[str, Any]], k: int,
         fusion: Fusion = DEFAULT_FUSION, query_vector: list[float] | None = None,
         leads: dict[str, Any] | None = None, lead_query: Any = None) -> list[dict[str, Any]]:
    """The ``k`` best of both lists by ``fusion``; each row gets ``_relevance_score``.

    With ``query_vector`` and full-text rows that carry their ``vector``, full-text candidates the vector list
    missed are given their real cosine similarity instead of none; with ``leads`` (``lead_vectors``), each
    document's lead similarity is mixed in by ``fusion.lead_weight``, taken with ``lead_query`` (the question by
    the base's lead model) where the leads are that model's vectors."""
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for row in [*vector_rows, *fts_rows]:
        rows.setdefault(_key(row), {k2: v for k2, v in row.items() if k2 != "vector"})
    cosine: dict[Key, float] = {}
    if fusion.method == "rrf":
        scored: dict[tuple[str, int, str], float] = dict.fromkeys(rows, 0.0)
        for weight, ranked in ((1 - fusion.fts_weight, vector_rows), (fusion.fts_weight, fts_rows)):
            for rank, row in enumerate(ranked, 1):
                scored[_key(row)] += weight / (fusion.constant + rank)
    else:
        cosine = {_key(r): 1.0 - float(r["_distance"]) for r in vector_rows}
        if query_vector is not None:
            import numpy as np

            q = np.asarray(query_vector, dtype="float32")
            for r in fts_rows:
                if _key(r) not in cosine and r.get("vector") is not None:
                    cosine[_key(r)] = float(np.dot(q, np.asarray(r["vector"], dtype="float32")))
        vec = _normalised(cosine)
        bm25 = {_key(r): float(r["_score"]) for r in fts_rows}
        top = max(bm25.values(), default=0.0)
        text = {key: v / top for key, v in bm25.items()} if top > 0 else {}
        share = min(1.0, fusion.fts_weight + fusion.fts_gap * _fts_lead(bm25)) if fusion.fts_gap else fusion.fts_weight
        scored = {key: share * text.get(key, 0.0) + (1 - share) * vec.get(key, 0.0) for key in rows}
    if fusion.doc_weight:
        scored = _with_document_support(scored, fusion.doc_weight)
    asked = lead_query if lead_query is not None else query_vector
    lead = _lead_similarity(leads, asked, cosine) if leads is not None and asked is not None else {}
    if fusion.lead_weight and lead:
        scored = _with_lead(scored, fusion.lead_weight, lead)
    order = sorted(rows, key=lambda item: (-scored[item], item))
    if fusion.doc_rank_constant:
        bm25_scores = {_key(r): float(r["_score"]) for r in fts_rows if "_score" in r}
        best = _best_per_document(scored)
        candidates = {source: value for source, value in lead.items() if source in best}
        documents = _document_ranks([(fusion.doc_rank_fused, best), (1.0, _best_per_document(cosine)),
                                     (1.0, _best_per_document(bm25_scores)), (1.0, candidates)],
                                    fusion.doc_rank_constant)
        # A tie goes to the better best chunk; the sort is stable: each document's chunks keep their order.
        order = sorted(order, key=lambda item: (-documents[item[0]], -best[item[0]]))
        scored = {key: documents[key[0]] for key in order}  # what the hits report: their document's fused rank
    slots = [scored[item] for item in order]  # a chunk standing in for its document's best keeps that one's score
    order = _content_first(order, rows)
    scored = {item: slot for item, slot in zip(order, slots, strict=True)}
    if fusion.per_source:
        order = _diversified(order, fusion.per_source)
    return [{**rows[item], "_relevance_score": scored[item]} for item in order[:k]]


def _check(kb: KnowledgeBase, query: str, k: int, mode: str) -> None:
    if mode not in MODES:
        raise KnowledgeError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    if not query.strip():
        raise KnowledgeError("empty query")
    if not 1 <= k <= MAX_K:
        raise KnowledgeError(f"k must be between 1 and {MAX_K}")


def _count(kb: KnowledgeBase) -> int:
    try:
        return int(kb.table.count_rows())
    except (RuntimeError, OSError) as exc:
        raise unreadable(kb, exc) from None


def unreadable(kb: KnowledgeBase, exc: Exception) -> KnowledgeError:
    """A base whose files are damaged (some deleted, a disk error): one line that says what can be done."""
    from halguru.rag.store import write_problem

    first = write_problem(exc)[:200]  # LanceDB's "lance error: Not found: FILE, /root/.cargo/.../local.rs:273:40"
    return KnowledgeError(f"knowledge base {kb.name!r} cannot be read ({first}); drop it with `halguru kb drop "
                          f"{kb.name}` and ingest its files again")


def _empty(kb: KnowledgeBase) -> KnowledgeError:
    if missing := kb.unfinished({}):  # a first ingest killed before its first batch: say which one to run again
        return KnowledgeError(f"knowledge base {kb.name!r} has no documents yet: {missing}")
    return KnowledgeError(f"knowledge base {kb.name!r} has no documents yet, run halguru kb ingest {kb.name} PATH")


def _missing_index(exc: Exception) -> bool:
    text = str(exc).lower()
    return "index" in text and ("fts" in text or "full" in text or "inverted" in text or "no" in text)


def _background(work: Callable[[], Any]) -> Future[Any]:
    """``work`` on a shared thread: LanceDB and NumPy let go of the GIL while they compute."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(4, thread_name_prefix="halguru-kb")
    return _POOL.submit(work)


_POOL: Any = None


def _rows(kb: KnowledgeBase, query: str, vector: list[float] | None, k: int, mode: Mode, where: str | None,
          fusion: Fusion, notes: list[str], fts: Future[Any] | None,
          lead_query: Future[Any] | None = None) -> list[dict[str, Any]]:
    """The rows of one search; ``fts`` is the full-text query already running (hybrid only), ``lead_query`` the
    question's vector by the base's lead model, being computed."""
    if mode == "fts":
        return list(build_query(kb, query, vector, k, mode, where).to_list())
    depth = k if mode == "vector" else max(CANDIDATES, k)
    vector_rows = (kb.nearest(vector, depth, COLUMNS) if where is None and vector is not None else None
                   ) or build_query(kb, query, vector, depth, "vector", where).to_list()
    if mode == "vector":
        return list(vector_rows)
    assert fts is not None, "a hybrid search starts its full-text query first"
    try:
        fts_rows = fts.result()
    except Exception as exc:  # LanceDB names the missing index in a RuntimeError/ValueError
        if not _missing_index(exc) or kb.table.count_rows() == 0:
            raise
        notes.append(f"knowledge base {kb.name!r} has no full-text index yet (an ingest was interrupted): "
                     f"vector search only; run halguru kb ingest {kb.name} PATH to finish it")
        fts_rows = []
    leads = lead_vectors(kb, [*vector_rows, *fts_rows]) if fusion.lead_weight or fusion.doc_rank_constant else None
    asked = None
    if lead_query is not None:
        try:
            asked = lead_query.result()
        except KnowledgeError as exc:  # a base moved to where its lead model is not installed: still searched
            notes.append(f"no lead vote: {exc}")
            leads = None
    return fuse(vector_rows, fts_rows, k, fusion, vector, leads, asked)


def search(kb: KnowledgeBase | str, query: str, k: int = 5, mode: Mode = "hybrid", where: str | None = None,
           embedder: str | None = None, fusion: Fusion | None = None) -> Hits:
    """The ``k`` best chunks for ``query``; raises KnowledgeError on an empty base or a bad ``where``."""
    if isinstance(kb, str):
        kb = KnowledgeBase.cached(kb)
    query = storable(query)  # a terminal's Latin-1 bytes would stop the tokenizer
    _check(kb, query, k, mode)
    # The question is embedded on a background thread (the model loaded first, once a process) while the table
    # is opened here (LanceDB imported, once a process: most of a CLI search); the full-text query then runs
    # beside the embedding.
    embedding = _background(lambda: embed_queries(kb.embedder(embedder), [query])[0]) if mode != "fts" else None
    fusion = fusion or default_fusion(kb.meta.embedder, kb.meta.lead_model)
    lead_query = None
    if mode == "hybrid" and kb.meta.lead_model and (fusion.lead_weight or fusion.doc_rank_constant):
        lead_query = _background(lambda: kb.lead_encoder().embed([query])[0])
    _, depth = kb.table, max(CANDIDATES, k)
    fts = None
    if mode == "hybrid":
        fts = _background(lambda: build_query(kb, query, None, depth, "fts", where, [*COLUMNS, "vector"]).to_list())
    vector = embedding.result() if embedding is not None else None
    notes: list[str] = []
    try:
        rows = _rows(kb, query, vector, k, mode, where, fusion, notes, fts, lead_query)
    except Exception as exc:  # LanceDB reports SQL errors as ValueError/RuntimeError with long text
        if _count(kb) == 0:  # an empty base has no full-text index yet either
            raise _empty(kb) from None
        if where and ("parsing" in str(exc).lower() or "sql" in str(exc).lower() or "schema" in str(exc).lower()
                      or "column" in str(exc).lower() or isinstance(exc, ValueError)):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            shown = where if len(where) <= 200 else f"{where[:200]}…"  # a generated filter ran to pages
            raise KnowledgeError(f"bad --where {shown!r}: {first[:200]}") from None
        if mode == "fts" and _missing_index(exc):
            raise KnowledgeError(f"knowledge base {kb.name!r} has no full-text index yet (an ingest was "
                                 f"interrupted); run halguru kb ingest {kb.name} PATH, or search with "
                                 "--mode vector") from None
        if isinstance(exc, RuntimeError | OSError):  # LanceDB's "Not found" of a damaged folder
            raise unreadable(kb, exc) from None
        raise
    if not rows and _count(kb) == 0:  # checked only when nothing was found: one query less
        raise _empty(kb)
    hits = Hits(notes=notes)
    if missing := kb.unfinished():  # an ingest killed or stopped, or running now: what the hits cannot hold
        hits.notes.append(missing)
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
