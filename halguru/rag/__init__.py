"""Knowledge bases (RAG on LanceDB): the Python API behind ``halguru kb``.

```python
from halguru import rag
kb = rag.create("docs")                  # default embedder, offline
rag.ingest("docs", ["./docs"])            # incremental; prune=True forgets deleted files
hits = rag.search("docs", "how do I install?", k=5, mode="hybrid")
```

Imports stay lazy: LanceDB and pyarrow load on first use, not with ``halguru``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "KnowledgeBase": "halguru.rag.store",
    "list_bases": "halguru.rag.store",
    "ingest": "halguru.rag.indexer",
    "reindex": "halguru.rag.indexer",
    "IngestSummary": "halguru.rag.indexer",
    "search": "halguru.rag.query",
    "Hit": "halguru.rag.query",
    "get_embedder": "halguru.rag.embedders",
    "KnowledgeError": "halguru.rag.errors",
}

__all__ = [*_EXPORTS, "create", "drop", "open_base", "optimize"]

if TYPE_CHECKING:  # pragma: no cover
    from halguru.rag.store import KnowledgeBase


def create(name: str, embedder: str | None = None, chunk_size: int = 256, chunk_overlap: int = 32,
           exist_ok: bool = False) -> KnowledgeBase:
    """Create an empty knowledge base (default embedder: the bundled model, offline)."""
    from halguru.rag.store import KnowledgeBase

    return KnowledgeBase.create(name, embedder, chunk_size, chunk_overlap, exist_ok=exist_ok)


def open_base(name: str) -> KnowledgeBase:
    from halguru.rag.store import KnowledgeBase

    return KnowledgeBase.open(name)


def drop(name: str) -> None:
    """Delete a knowledge base and its files, with what a killed re-index of it left (refused while an ingest
    holds it). A base whose metadata cannot be read is dropped all the same: nothing else could remove it."""
    import shutil

    from halguru.rag.indexer import clear_leftovers, folder_lock
    from halguru.rag.store import META_FILE, base_folder

    folder = base_folder(name)
    if not (folder / META_FILE).exists():
        open_base(name)  # the clear "no knowledge base" error
    with folder_lock(name, folder):
        shutil.rmtree(folder)
        clear_leftovers(name)


def optimize(name: str) -> int:
    """Compact a base's fragments and refresh its indexes; returns the fragments left. A failed write (a full
    disk) is one line: LanceDB commits atomically, so the base keeps its last version."""
    from halguru.rag.errors import KnowledgeError
    from halguru.rag.indexer import ingest_lock
    from halguru.rag.store import write_problem

    kb = open_base(name)
    with ingest_lock(kb):
        try:
            kb.ensure_fts_index() if kb.table.count_rows() else None
            return kb.optimize()
        except (OSError, RuntimeError) as exc:
            raise KnowledgeError(f"optimizing knowledge base {name!r} failed: {write_problem(exc)}; it is unchanged "
                                 f"and still searchable. Make room (or fix the cause) and run `halguru kb optimize "
                                 f"{name}` again") from None


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'halguru.rag' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
