"""Knowledge bases: retrieval quality on seven offline evaluation sets, ingest speed and query latency.

Sets (scripts/bench/kb_eval): ``pydoc`` (stdlib pydoc pages), ``man`` (Debian base tools' manual pages), ``code``
(stdlib source files), ``info`` (the nodes of GNU info manuals), ``html`` (HTML reference pages as Debian ships
them: Node.js API, Valgrind manual, libxslt; read by halguru's HTML loader) and ``md`` (Markdown pages as this
machine ships them: npm's documentation, buildah's manual pages, podman, docker-registry, pip and containerd docs,
some gzipped) and ``admin`` (~300 manual pages of sections 5 and 8: configuration formats and administration
commands); info, html, md and admin were added after the defaults were chosen, so both of their splits are unseen;
pydoc and man also have a ``holdout`` split (kb_eval/holdout.py: 24 questions each, written after the lead model was
chosen, never tuned on). Each set has 54-88 questions written as users ask them, labelled with the answering
document(s), split into dev (tune here) and test (report only). A label that names no document of a full-size corpus
stops the run (a typo, or an answering page not installed here), except man's alternatives (awk, gawk, mawk:
whichever is installed). For each set and split: recall@5, MRR@10 and nDCG@10 of every configuration (full-text,
vector, hybrid fusions), against plain BM25 over whole documents measured in the same run. Embedders: the default,
or those named in HALGURU_BENCH_KB_EMBEDDERS (comma separated, e.g. ``wordllama,sentence-transformers``);
HALGURU_BENCH_KB_SETS picks sets and HALGURU_BENCH_KB_CHUNK_SIZE the chunk size (default 256 tokens);
HALGURU_BENCH_KB_PAGES smaller corpora (``pydoc=80,man=80,code=60``: the answering documents first, then as many
others). Byte-identical copies of a page under several names (man's gzip, gunzip, zcat) count as one document, for
every configuration and the baseline.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
from _common import Result, main
from kb_eval.corpus import build, copies
from kb_eval.holdout import HOLDOUT
from kb_eval.metrics import WholeDocBM25, scores
from kb_eval.questions import SETS, split

PAGES = {"pydoc": 300, "man": 330, "code": 160, "info": 700, "html": 200, "md": 200, "admin": 300}
INGEST_GOAL = 6400 / 300  # chunks a second: issue 13's budget, 6,400 chunks in 5 minutes on 2 cores
ALTERNATIVES = {"man"}  # sets whose labels may name pages not installed here, as alternatives to installed ones


def _check_labels(set_name: str, labels: dict[str, str], pages: int) -> None:
    """Stop on a label that names no document of the corpus: its question would count as a miss for every
    configuration. A corpus smaller than the set's answering documents (quick runs, HALGURU_BENCH_KB_PAGES) may
    leave some out: then it only says how many questions lost every answer."""
    named = {a for _, answer in SETS[set_name] for a in answer}
    unknown = sorted(named - labels.keys())
    lost = [q for q, answer in SETS[set_name] if not any(a in labels for a in answer)]
    if pages < len(named):
        if lost:
            print(f"{set_name}: {len(lost)} questions have no answering document in this {pages}-page corpus",
                  file=sys.stderr)
        return
    if lost or (unknown and set_name not in ALTERNATIVES):
        raise SystemExit(f"{set_name}: labels naming no document in {len(labels)} ({len(unknown)}): "
                         f"{', '.join(unknown)}; questions left with no answer: {lost or 'none'}")
    if unknown:
        print(f"{set_name}: alternatives not in this corpus: {', '.join(unknown)}", file=sys.stderr)


def _configs() -> dict[str, object]:
    from halguru.rag.query import Fusion

    configs: dict[str, object] = {"fts": "fts", "vector": "vector",
                                  "rrf 1:1 k60 (old fusion)": Fusion("rrf", 0.5, per_source=0)}
    for w in (0.6, 0.7, 0.8):
        configs[f"rrf fts {w} k60"] = Fusion("rrf", w, per_source=0)
    configs["rrf fts 0.7 k20"] = Fusion("rrf", 0.7, 20, per_source=0)
    for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        configs[f"score fts {w}"] = Fusion("score", w, per_source=0)
    for w in (0.4, 0.5):
        for d in (0.2, 0.5):
            configs[f"score fts {w} doc {d}"] = Fusion("score", w, doc_weight=d, per_source=0)
    configs["rrf 1:1 k60 doc 0.3"] = Fusion("rrf", 0.5, doc_weight=0.3, per_source=0)
    for w in (0.3, 0.5):
        for n in (1, 2):
            configs[f"score fts {w} max {n}/doc"] = Fusion("score", w, per_source=n)
    for w in (0.2, 0.4, 0.6, 0.7):  # one chunk per document first (the default's diversification), other weights
        configs[f"score fts {w} max 1/doc"] = Fusion("score", w, per_source=1)
    configs["score fts 0.4 doc 0.2 max 1/doc"] = Fusion("score", 0.4, doc_weight=0.2, per_source=1)
    configs["vector max 1/doc"] = Fusion("score", 0.0, per_source=1)
    for w in (0.1, 0.15, 0.25):
        configs[f"score fts {w} max 1/doc"] = Fusion("score", w, per_source=1)
    for d in (0.1, 0.2):
        configs[f"score fts 0.2 doc {d} max 1/doc"] = Fusion("score", 0.2, doc_weight=d, per_source=1)
    configs["rrf fts 0.3 k60 max 1/doc"] = Fusion("rrf", 0.3, per_source=1)
    # each document's lead (its first chunk: a man page's NAME, a module's docstring) votes for its chunks
    for lead in (0.2, 0.3, 0.5, 0.6, 0.8):
        configs[f"score fts 0.2 doc 0.1 lead {lead} max 1/doc"] = Fusion("score", 0.2, doc_weight=0.1, lead_weight=lead)
    configs["score fts 0.2 lead 0.5 max 1/doc"] = Fusion("score", 0.2, lead_weight=0.5)
    # the full-text share raised by its best document's lead over its second (``fts_gap``; the default's is 0.4)
    for gap in (0.3, 0.4, 0.5):
        configs[f"score fts 0.2 gap {gap} doc 0.1 lead 0.8 max 1/doc"] = Fusion(
            "score", 0.2, doc_weight=0.1, lead_weight=0.8, fts_gap=gap)
    configs["score fts 0.2 gap 0.4 doc 0.1 lead 0.5 max 1/doc"] = Fusion(
        "score", 0.2, doc_weight=0.1, lead_weight=0.5, fts_gap=0.4)  # a base without a lead model
    configs["score fts 0.3 doc 0.1 lead 0.5 max 1/doc"] = Fusion("score", 0.3, doc_weight=0.1, lead_weight=0.5)
    configs["score fts 0.1 doc 0.1 lead 0.5 max 1/doc"] = Fusion("score", 0.1, doc_weight=0.1, lead_weight=0.5)
    # documents ordered by rank fusion of four document-level lists (best fused chunk x2, cosine, BM25, lead)
    for constant in (5, 10, 20):
        configs[f"score fts 0.2 doc 0.1 lead 0.5 docrank {constant}"] = Fusion(
            "score", 0.2, doc_weight=0.1, lead_weight=0.5, doc_rank_constant=constant)
    # in a base with a lead model (all-mpnet-base-v2) the lead configurations above use its vectors; these use the
    # embedder's own vector of the lead instead, as a base without one does (the default before the lead model)
    for lead in (0.5, 0.8):
        configs[f"score fts 0.2 doc 0.1 embedder's lead {lead} max 1/doc"] = (
            OWN_LEAD, Fusion("score", 0.2, doc_weight=0.1, lead_weight=lead))
    return configs


OWN_LEAD = "embedder's lead"  # a configuration whose lead vote uses the chunks' own vectors


def _rankings(kb: object, questions: list[tuple[str, list[str]]], labels: dict[str, str],
              same: dict[str, str]) -> dict[str, list]:
    """config -> [(ranked sources of the top 10 chunks, relevant sources)] for ``questions``; identical copies
    of a document are named by one of them (``same``)."""
    from halguru.rag.embedders import embed_queries
    from halguru.rag.loaders import kind_of
    from halguru.rag.query import CANDIDATES, COLUMNS, Fusion, build_query, fuse, lead_vectors

    model = kb.embedder()  # type: ignore[attr-defined]
    lead_model = kb.lead_encoder()  # type: ignore[attr-defined]
    table = kb.table  # type: ignore[attr-defined]
    firsts = table.search().where("chunk_index = 0").select(["source", "vector"]).limit(table.count_rows()).to_list()
    own = {r["source"]: r["vector"] for r in firsts if kind_of(Path(r["source"])) != "code"}  # leads, own vectors
    out: dict[str, list] = {name: [] for name in _configs()}
    for question, answer in questions:
        relevant = {same.get(labels[a], labels[a]) for a in answer if a in labels}
        vector = embed_queries(model, [question])[0]
        asked = lead_model.embed([question])[0] if lead_model is not None else None
        vec_rows = build_query(kb, question, vector, CANDIDATES, "vector", None).to_list()  # type: ignore[arg-type]
        fts_rows = build_query(kb, question, vector, CANDIDATES, "fts", None,  # type: ignore[arg-type]
                               [*COLUMNS, "vector"]).to_list()
        leads = lead_vectors(kb, [*vec_rows, *fts_rows])  # type: ignore[arg-type]
        own_leads = {r["source"]: own[r["source"]] for r in [*vec_rows, *fts_rows] if r["source"] in own}
        for name, config in _configs().items():
            if config == "fts":
                rows = fts_rows[:10]
            elif config == "vector":
                rows = vec_rows[:10]
            elif isinstance(config, tuple):
                rows = fuse(vec_rows, fts_rows, 10, config[1], vector, own_leads)
            else:
                assert isinstance(config, Fusion)
                rows = fuse(vec_rows, fts_rows, 10, config, vector, leads, asked)
            out[name].append(([same.get(r["source"], r["source"]) for r in rows], relevant))
    return out


def _print_row(label: str, figures: tuple[float, float, float]) -> None:
    print(f"  {label:<34} recall@5 {figures[0]:.2f}  MRR@10 {figures[1]:.2f}  nDCG@10 {figures[2]:.2f}")


def _evaluate(set_name: str, emb: str, quick: bool) -> list[Result]:
    from halguru import rag
    from halguru.rag.query import default_fusion

    pages = dict(item.split("=") for item in os.environ.get("HALGURU_BENCH_KB_PAGES", "").split(",") if "=" in item)
    corpus_pages = int(pages.get(set_name, 60 if quick else PAGES[set_name]))
    folder, labels = build(set_name, corpus_pages)
    if not labels:
        print(f"\n{set_name}: no documents on this machine (man pages or man itself missing?); set skipped")
        return []
    _check_labels(set_name, labels, corpus_pages)
    base = f"{set_name}-{emb.replace(':', '-')}"[:60]
    size = int(os.environ.get("HALGURU_BENCH_KB_CHUNK_SIZE", "256"))
    kb = rag.create(base, emb, chunk_size=size, chunk_overlap=min(32, size // 8))
    started = time.perf_counter()
    summary = rag.ingest(base, [folder])
    seconds = time.perf_counter() - started
    results = [Result("kb", f"ingest chunks/s {set_name} ({emb})", summary.chunks / seconds, "chunks/s",
                      INGEST_GOAL, True, summary.chunks / seconds / INGEST_GOAL, "of issue 13's 6,400 chunks in 5 min",
                      f"{len(labels)} docs, {summary.chunks} chunks in {seconds:.0f} s", 1)]
    bm25 = WholeDocBM25.from_folder(folder, labels)
    same = copies(folder)
    for part in ("dev", "test", "holdout") if set_name in HOLDOUT else ("dev", "test"):
        questions = split(SETS[set_name], part) if part != "holdout" else [  # a smaller corpus may lack answers
            (q, answer) for q, answer in HOLDOUT[set_name] if any(a in labels for a in answer)]
        print(f"\n{set_name} / {part} ({len(questions)} questions, {len(labels)} docs, {summary.chunks} chunks, "
              f"embedder {emb})")
        baseline = scores([([same.get(s, s) for s in bm25.rank(q)], {same.get(labels[a], labels[a]) for a in ans
                                                                     if a in labels}) for q, ans in questions])
        _print_row("BM25 whole documents (baseline)", baseline)
        for name, ranked in _rankings(kb, questions, labels, same).items():
            figures = scores(ranked)
            _print_row(name, figures)
            default = _configs()[name] == default_fusion(emb, kb.meta.lead_model)
            if part == "test" and (default or name in {"fts", "vector"}):
                label = "hybrid (default)" if default else name
                results.append(Result("kb", f"recall@5 {set_name} test {label} ({emb})", figures[0], "",
                                      0.9 if default else 0.0, True, figures[0] / max(baseline[0], 1e-9),
                                      "whole-document BM25", f"MRR@10 {figures[1]:.2f} (BM25 {baseline[1]:.2f}), "
                                      f"nDCG@10 {figures[2]:.2f} (BM25 {baseline[2]:.2f})", 1))
        # the default as the product runs it (a long-lived process: the vector side in NumPy, questions in ONNX
        # Runtime from the second on): near-ties can fall otherwise than in the rows above, computed from LanceDB
        _print_row("default via rag.search", scores(_searched(base, questions, labels, same)))
    results.append(_latency(base, SETS[set_name], emb))
    results.append(_cli_latency(base, SETS[set_name], 5 if quick else 10))
    return results


def _searched(base: str, questions: list[tuple[str, list[str]]], labels: dict[str, str],
              same: dict[str, str]) -> list[tuple[list[str], set[str]]]:
    """(ranked sources of the top 10 chunks, relevant sources) of each question through ``rag.search``."""
    from halguru import rag

    return [([same.get(h.source, h.source) for h in rag.search(base, question, k=10)],
             {same.get(labels[a], labels[a]) for a in answer if a in labels}) for question, answer in questions]


def _latency(base: str, questions: list[tuple[str, list[str]]], emb: str) -> Result:
    from halguru import rag

    ms, vector_ms = [], []
    for question, _ in questions:  # interleaved with the vector side alone, the baseline, so load hits both
        t = time.perf_counter()
        rag.search(base, question, k=5)
        ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        rag.search(base, question, k=5, mode="vector")
        vector_ms.append((time.perf_counter() - t) * 1000)
    p50, vector_p50 = statistics.median(ms), statistics.median(vector_ms)
    return Result("kb", f"hybrid search p50 ms {base}", p50, "ms", 50, False, p50 / vector_p50,
                  "of vector-only search", f"p95 {statistics.quantiles(ms, n=20)[-1]:.1f} ms; vector-only p50 "
                  f"{vector_p50:.1f} ms", len(ms))


def _cli_latency(base: str, questions: list[tuple[str, list[str]]], runs: int) -> Result:
    """`halguru kb search` wall time (a new process each: what a user waits for), interleaved with a bare
    `import lancedb`, the floor any CLI search on LanceDB pays."""
    from bench_startup import halguru_command, wall_ms

    halguru = halguru_command()[:1]
    floor = [sys.executable, "-c", "import lancedb"]
    wall_ms([*halguru, "kb", "search", base, questions[0][0]]), wall_ms(floor)  # warm the page cache
    cli: list[float] = []
    bare: list[float] = []
    for question, _ in questions[:runs]:
        cli.append(wall_ms([*halguru, "kb", "search", base, question, "-k", "5"]))
        bare.append(wall_ms(floor))
    p50 = statistics.median(cli)
    return Result("kb", f"`halguru kb search` wall ms {base}", p50, "ms", 1000, False, p50 / statistics.median(bare),
                  "of `python -c 'import lancedb'`", f"{min(cli):.0f}-{max(cli):.0f} ms; import lancedb "
                  f"{statistics.median(bare):.0f} ms", len(cli))


def measure(quick: bool) -> list[Result]:
    from halguru.rag.embedders import DEFAULT_EMBEDDER

    embedders = [e for e in os.environ.get("HALGURU_BENCH_KB_EMBEDDERS", DEFAULT_EMBEDDER).split(",") if e]
    sets = [s for s in os.environ.get("HALGURU_BENCH_KB_SETS", ",".join(SETS)).split(",") if s]
    results: list[Result] = []
    for emb in embedders:
        for set_name in sets:
            results += _evaluate(set_name, emb, quick)
    return results


if __name__ == "__main__":
    main("Knowledge bases (RAG on LanceDB): retrieval quality per set, split and configuration", measure,
         __doc__ or "")
