"""Ingest files into a knowledge base: incremental by content hash, safe to kill.

Order of writes for a changed file: its new chunks are committed first, then the
chunks of its old version are deleted. A kill in between leaves both versions
(still queryable); the next ingest sees two hashes for the path and finishes the
job. An exclusive lock file keeps a second ingest of the same base out; it lives beside the bases (in
``.locks/``), not in the base's folder, which a re-index replaces. An ingest that waited for it reads the base's
metadata again once it holds it, so it never writes one embedder's vectors into a base re-indexed with another.

A write that fails (a full disk) is one line saying how far the ingest got; what was committed is kept and the
next ingest finishes the job, as after a kill.

``stop_ingests()`` asks the ingests running in this process to stop after their
current file, or within a few chunks of the batch being embedded (Ctrl-C or Esc
during an agent's first retrieval): what was committed is kept, what was not yet
is dropped whole, the next ingest does the rest, and the caller can say how far
each got.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halguru.atomic import exclusive_lock
from halguru.rag.chunking import CHUNKER_VERSION, Chunk, chunk_text, document_title
from halguru.rag.embedders import embed_passages
from halguru.rag.errors import KnowledgeError
from halguru.rag.loaders import Document, Skip, discover, load, read_bytes
from halguru.rag.store import KnowledgeBase, base_folder

# Chunks embedded and committed together: fewer LanceDB fragments, bounded work lost on a kill.
BATCH_CHUNKS = int(os.environ.get("HALGURU_KB_BATCH_CHUNKS", "128"))
STOP_STEP = 16  # chunks embedded between two looks at a stop request (an ingest a scope may stop)
OPTIMIZE_FRAGMENTS = 32  # compaction runs when an ingest leaves more fragments than this


@dataclass
class IngestSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, what its parser repaired), indexed
    chunks: int = 0  # chunks embedded and written by this ingest
    gone: list[str] = field(default_factory=list)  # indexed files deleted since, kept (no --prune)

    def line(self) -> str:
        warned = f", {len(self.warnings)} warning(s)" if self.warnings else ""
        gone = (f"; {len(self.gone)} indexed file(s) no longer exist and are still searched (--prune removes "
                "them)") if self.gone else ""
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed, {len(self.skipped)} skipped{warned} "
                f"({self.chunks} chunks embedded){gone}")


# progress(event, value): ("files", total) once, then ("file", path) per file and ("chunks", n) per batch;
# ("note", line) for what the user should hear of (a model prepared once)
Progress = Callable[[str, object], None]


class IngestStopped(KnowledgeError):
    """An ingest stopped by its ``IngestScope``; what it committed is kept."""


class IngestScope:
    """Lets a caller stop the ingests its work starts, on whatever thread they run, and say how far they got.

    ``IngestScope.enter()`` makes a scope current in the caller's context (contextvars: the threads of
    ``asyncio.to_thread`` and the tasks it starts inherit it). ``stop()`` makes each of its ingests stop
    after its current file or within ``STOP_STEP`` chunks of the batch it embeds (the batch is dropped whole), and
    ``stopped`` lists, one line each, the ingests that did so.
    """

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.stopped: list[str] = []
        self._active = 0
        self._idle = threading.Condition()

    @classmethod
    def enter(cls) -> IngestScope:
        scope = cls()
        _SCOPE.set(scope)
        return scope

    def stop(self, wait: float = 0.0) -> list[str]:
        """Ask this scope's ingests to stop; wait up to ``wait`` seconds for the running ones to do so."""
        self.stop_requested.set()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=wait)
        return list(self.stopped)

    @contextlib.contextmanager
    def running(self, base: str) -> Iterator[_Running]:
        with self._idle:
            self._active += 1
        try:
            yield _Running(base, self)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()


@dataclass
class _Running:
    base: str
    scope: IngestScope | None
    total: int = 0
    done: int = 0

    def check(self) -> None:
        """Raise IngestStopped (and tell the scope) when the scope asked to stop."""
        if self.scope is not None and self.scope.stop_requested.is_set():
            line = (f"indexing knowledge base {self.base!r} stopped after {self.done} of {self.total} file(s); "
                    "those are kept and the next run indexes the rest") if self.total else (
                    f"indexing knowledge base {self.base!r} stopped before it began; the next run indexes it")
            self.scope.stopped.append(line)
            raise IngestStopped(line)


_SCOPE: contextvars.ContextVar[IngestScope | None] = contextvars.ContextVar("halguru_ingest_scope", default=None)


class IngestFailed(KnowledgeError):
    """A write to the base failed (a full disk); what was committed before is kept."""


@contextlib.contextmanager
def ingest_lock(kb: KnowledgeBase, wait: bool = False, waits: bool = False,
                waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive flock (released by the kernel even on SIGKILL); ``waits``: the refusal names ``--wait``
    (only `kb ingest` has it); ``waiting`` hears, before a wait, who holds it."""
    with folder_lock(kb.name, kb.folder, wait, waits, waiting):
        yield


@contextlib.contextmanager
def folder_lock(name: str, folder: Path, wait: bool = False, waits: bool = False,
                waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """``ingest_lock`` of base ``name`` in ``folder``, whose metadata need not be readable (`kb drop` of a damaged
    base). Its file is ``.locks/NAME.lock`` beside the folder: in the folder, a re-index (which swaps folders)
    left its waiters holding the lock of a deleted file, free to write at once."""
    lock_file = folder.parent / ".locks" / f"{folder.name}.lock"
    with contextlib.ExitStack() as held:
        try:
            handle = held.enter_context(exclusive_lock(lock_file, wait=wait and waiting is None))
        except BlockingIOError:
            holder = lock_file.read_text(encoding="utf-8").strip() or "another process"
            busy = f"knowledge base {name!r} is being ingested by {holder}"
            if not wait:
                raise KnowledgeError(f"{busy}; try again when it finishes"
                                     + (" (`--wait` waits for it)" if waits else "")) from None
            if waiting is not None:  # `kb ingest --wait` sat silent for minutes, as if hung
                waiting(f"{busy}; waiting for it to finish")
            handle = held.enter_context(exclusive_lock(lock_file, wait=True))
        _note_holder(handle.fileno(), f"pid {os.getpid()}".encode())
        try:
            yield
        finally:
            _note_holder(handle.fileno(), b"")


def _note_holder(fd: int, note: bytes) -> None:
    """Say in the lock file who holds it, for a refusal's message. Best effort: on a full disk the note cannot be
    written, and `kb drop`, the way to make room, failed with "No space left on device" and freed nothing."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        if note:
            os.pwrite(fd, note, 0)


def _source_name(path: Path, root: Path) -> str:
    """Citation name: the path from the folder given (its name included), e.g. docs/guide.md."""
    if root.is_file():
        return _safe(path.name)
    return _safe((Path(root.resolve().name) / path.relative_to(root)).as_posix())


def _key(file: Path) -> str:
    """A file's key in the base (its ``path`` column): its resolved path, display-safe."""
    return _safe(str(file.resolve()))


def _safe(name: str) -> str:
    """``name`` with the bytes of a file name that are not UTF-8 (a Latin-1 name from an old archive or a Windows
    zip) written as ``\\xe9``: Python reads them as lone surrogates, which the tokenizers and Arrow refuse (the
    whole ingest failed with a traceback)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def _on_disk(key: str) -> Path:
    """The file a stored key names (``_safe`` undone: each ``\\xNN`` back to the byte it stood for)."""
    path = Path(key)
    if "\\x" not in key or path.exists():
        return path
    return Path(_ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), key))  # os.fsdecode's form of the byte


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ingest(kb: KnowledgeBase | str, paths: list[str | Path], *, prune: bool | str = False, embedder: str | None = None,
           progress: Progress | None = None, wait: bool = False, only: set[str] | None = None) -> IngestSummary:
    """Add or update the files under ``paths``; ``prune`` removes chunks of files that are gone, ``"mirror"``
    every file not found under ``paths`` (a knowledge folder's base holds that folder only); ``only``: read just
    these files (resolved paths) of those found."""
    if isinstance(kb, str):
        kb = KnowledgeBase.open(kb)
    notify = progress or (lambda event, value: None)
    roots = [Path(p).expanduser() for p in paths]
    scope = _SCOPE.get()
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(scope.running(kb.name)) if scope is not None else _Running(kb.name, None)
        model = kb.embedder(embedder)  # loading it takes seconds the first time: a stop is seen right after
        lead = kb.lead_encoder(lambda line: notify("note", line))  # prepared from its wheels the first time
        from halguru.rag.lean_import import lancedb

        lancedb()  # imported before the lock is taken: the lock's holder is at work from its first moment
        running.check()
        stack.enter_context(ingest_lock(kb, wait=wait, waits=True, waiting=lambda line: notify("note", line)))
        if kb.reload_meta():  # re-indexed while this ingest waited: embed as the base now does, or refuse
            model = kb.embedder(embedder)
            lead = kb.lead_encoder(lambda line: notify("note", line))
        if kb.folder == base_folder(kb.name):  # no re-index runs now (it would hold the lock): its leftovers go
            clear_leftovers(kb.name)
        try:
            return _ingest(kb, roots, running, prune=prune, model=model, lead=lead, notify=notify, only=only)
        except BaseException:  # Ctrl-C, a stop, a full disk: what it did not add is said by searches
            kb.stop_ingest()
            raise


def _ingest(kb: KnowledgeBase, roots: list[Path], running: _Running, *, prune: bool | str, model: Any, lead: Any,
            notify: Progress, only: set[str] | None = None) -> IngestSummary:
    """The body of ``ingest``, under its lock."""
    summary = IngestSummary()
    stored = _stored(kb)
    _check_chunker(kb, bool(stored), notify)
    files = _files(roots, summary)
    if only is not None:  # a re-index: the files the base held, not all the folders around them hold now
        files = [(file, root) for file, root in files if _key(file) in only]
    notify("files", len(files))
    running.total = len(files)
    kb.begin_ingest(_command(kb.name, roots, prune), list(dict.fromkeys(
        key for key in (_key(file) for file, _ in files) if key not in stored)))
    seen: set[str] = set()
    pending: list[dict[str, object]] = []
    stale: list[str] = []  # delete predicates for old versions, run in the new chunks' commit (or alone)
    indexed = [True] if stored else []  # a base with rows has its full-text index, unless a kill came first
    taken = {source: path for path, (source, _) in stored.items()}  # citation name -> the file that has it

    def commit(upto: int) -> None:
        """Write the pending rows (files ``upto`` on are not in them) and the stale rows' deletion."""
        if pending:
            _embed_rows(model, pending, running)
            if lead is not None:
                _add_leads(pending, lead)
            with _writing(kb, running, summary):
                if stale:  # the new versions in, the old out, in one commit: a search between two got both
                    (kb.table.merge_insert(["path", "id"]).when_not_matched_insert_all()
                     .when_not_matched_by_source_delete(" OR ".join(stale)).execute(list(pending)))
                    stale.clear()
                else:
                    kb.table.add(list(pending))
                if not indexed:  # from the first batch on, full-text search works (later rows are scanned until
                    kb.ensure_fts_index()  # the index is refreshed at the end): a kill leaves a searchable base
                    indexed.append(True)
            summary.chunks += len(pending)
            notify("chunks", len(pending))
            pending.clear()
        if stale:
            with _writing(kb, running, summary):
                kb.table.delete(" OR ".join(stale))
            stale.clear()
        running.done = upto

    for index, (file, root) in enumerate(files):
        if running.scope is not None and running.scope.stop_requested.is_set():
            # What is pending is dropped, not embedded first (seconds): its files are not in the base, and
            # the next ingest indexes them
            if not pending and not stale:
                running.done = index
            running.check()
        notify("file", str(file))
        key = _key(file)
        if key in seen:  # the same file again (a symlink to it, a folder and the file in it): indexed once
            continue
        seen.add(key)
        old = stored.get(key)
        data = read_bytes(file)
        if isinstance(data, Skip):
            _skip(file, data.reason, old, stale, summary)
            continue
        digest = hashlib.sha256(data).hexdigest()[:32]
        source = _unique_source(_source_name(file, root), key, taken)
        if old is not None and digest in old[1]:  # unchanged: not parsed again
            if len(old[1]) > 1:  # an update killed half-way: drop the older version now
                stale.append(f"(path = {_quote(key)} AND doc_hash != {_quote(digest)})")
                summary.updated.append(source)
            else:
                summary.unchanged.append(source)
            continue
        loaded: Document | Skip = load(file, data)
        if isinstance(loaded, Skip):
            _skip(file, loaded.reason, old, stale, summary)
            continue
        summary.warnings += [(str(file), w) for w in loaded.warnings]
        chunks = chunk_text(loaded.text, loaded.kind, kb.meta.chunk_size, kb.meta.chunk_overlap)
        if not chunks:
            _skip(file, "no text to index", old, stale, summary)
            continue
        (summary.updated if old is not None else summary.added).append(source)
        pending += _chunk_rows(key, source, digest, loaded.title or document_title(loaded.text, loaded.kind), chunks)
        if old is not None:
            stale.append(f"(path = {_quote(key)} AND doc_hash != {_quote(digest)})")
        if len(pending) >= BATCH_CHUNKS:
            commit(index + 1)
    commit(len(files))
    with _writing(kb, running, summary):
        _finish(kb, roots, stored, seen, summary, prune)
    kb.end_ingest()
    return summary


def _command(name: str, roots: list[Path], prune: bool | str) -> str:
    """The `kb ingest` that does what this ingest does, from any folder (what a search names to finish it)."""
    import shlex

    given = " ".join(shlex.quote(os.path.abspath(root)) for root in roots)
    return f"halguru kb ingest {name} {given}" + (" --prune" if prune else "")


def _embed_rows(model: Any, rows: list[dict[str, object]], running: _Running) -> None:
    """Give ``rows`` their vectors. An ingest its scope may stop (`halguru dev`'s Esc) embeds ``STOP_STEP`` chunks
    at a time and stops between two: a stop waited for the whole batch (10 s on a slow machine), and the batch is
    dropped whole, so the base holds whole files only."""
    texts = [str(row["search_text"]) for row in rows]
    step = STOP_STEP if running.scope is not None else len(texts)
    vectors: list[Any] = []
    for start in range(0, len(texts), step):
        running.check()
        vectors.extend(embed_passages(model, texts[start:start + step]))
    for row, vector in zip(rows, vectors, strict=True):
        row["vector"] = vector


def _check_chunker(kb: KnowledgeBase, holds: bool, notify: Progress) -> None:
    """An empty base is stamped with this halguru's chunking (every file is chunked now); one chunked by an older
    halguru says so, as the unchanged files it skips keep their old chunks."""
    if not holds:
        kb.meta.chunker = CHUNKER_VERSION
    elif kb.meta.chunker < CHUNKER_VERSION:
        notify("note", f"{kb.name} was chunked by an older halguru: the files it holds keep their old sections "
                       f"and citations until `halguru kb reindex {kb.name}` re-reads them")


@contextlib.contextmanager
def _writing(kb: KnowledgeBase, running: _Running, summary: IngestSummary) -> Iterator[None]:
    """A write to the base; one that fails (LanceDB's IO errors are RuntimeErrors naming a Rust source file) is
    one line saying what happened and how far the ingest got, as Ctrl-C's is, instead of a traceback."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        from halguru.rag.store import write_problem

        where = (f"at file {running.done + 1} of {running.total}" if running.done < running.total
                 else f"after its {running.total} file(s)")
        raise IngestFailed(f"writing to knowledge base {kb.name!r} failed {where}: {write_problem(exc)}; the "
                           f"{summary.chunks} chunk(s) written before are kept and searchable. Make room (or fix "
                           "the cause) and run the same ingest again to finish: unchanged files are skipped") from None


def _unique_source(source: str, key: str, taken: dict[str, str]) -> str:
    """``source``, or with the folders above it until no other file of the base has that name: twelve packages'
    ``README.Debian`` given one by one were one document to search and cite (``dpkg/README.Debian`` now)."""
    above = [part for part in Path(key).parts[:-len(Path(source).parts)] if part != "/"]
    while taken.get(source, key) != key and above:
        source = f"{above.pop()}/{source}"
    taken[source] = key
    return source


def _stored(kb: KnowledgeBase) -> dict[str, tuple[str, set[str]]]:
    """The base's documents as they are now (another process may have committed); a damaged folder is one line."""
    kb.refresh()
    try:
        return kb.documents()
    except (RuntimeError, OSError) as exc:  # nothing is written to it
        from halguru.rag.query import unreadable

        raise unreadable(kb, exc) from None


def _skip(file: Path, reason: str, old: tuple[str, set[str]] | None, stale: list[str],
          summary: IngestSummary) -> None:
    """A file not indexed, with why. One that was indexed and now gives no text (emptied, turned binary) loses
    its old chunks, or its old text stayed searchable and cited (with lines that no longer exist)."""
    summary.skipped.append((str(file), reason))
    if old is not None:
        stale.append(f"(path = {_quote(_key(file))})")
        summary.removed.append(old[0])


def _files(roots: list[Path], summary: IngestSummary) -> list[tuple[Path, Path]]:
    """(file, the root it was found under) for every file to read; what cannot be read is noted as skipped."""
    files: list[tuple[Path, Path]] = []
    for root in roots:
        found, skipped = discover([root])
        summary.skipped += [(str(s.path), s.reason) for s in skipped]
        files += [(f, root) for f in found]
    return files


def _chunk_rows(key: str, source: str, digest: str, title: str, chunks: list[Chunk]) -> list[dict[str, object]]:
    """The table rows of one document's chunks. What is embedded and searched is the chunk's text under a label
    naming its source, the document's title and the chunk's heading, so a passage is found by what it is part of."""
    rows: list[dict[str, object]] = []
    for i, chunk in enumerate(chunks):
        label = " | ".join(part for part in (source, title, chunk.heading) if part)
        rows.append({
            "id": f"{digest}:{i}", "path": key, "source": source, "doc_hash": digest,
            "heading": chunk.heading, "line_start": chunk.line_start, "line_end": chunk.line_end,
            "chunk_index": i, "text": chunk.text, "search_text": f"{label}\n{chunk.text}",
        })
    return rows


def _add_leads(rows: list[dict[str, object]], lead: Any) -> None:
    """Give each document's first chunk its lead model's vector (the lead vote of hybrid search), the other rows
    none. Source files get none: their first chunk is a licence and imports (see ``query.lead_vectors``)."""
    from halguru.rag.loaders import kind_of

    firsts = [row for row in rows if row["chunk_index"] == 0 and kind_of(Path(str(row["path"]))) != "code"]
    vectors = lead.embed([str(row["search_text"]) for row in firsts]) if firsts else []
    for row in rows:
        row["lead"] = None
    for row, vector in zip(firsts, vectors, strict=True):
        row["lead"] = vector.tolist()


def _finish(kb: KnowledgeBase, roots: list[Path], stored: dict[str, tuple[str, set[str]]], seen: set[str],
            summary: IngestSummary, prune: bool | str) -> None:
    """After the files: forget deleted ones (``prune``), refresh the full-text index, compact, stamp the base."""
    # Not found this time: deleted, or under a folder read now but no longer a file of its own there (a folder or
    # a FIFO in its place, a link to another file of the base), which was neither removed nor said
    under = [_key(r) for r in roots if r.is_dir()]
    gone = [p for p in stored if p not in seen and (prune == "mirror" or not _on_disk(p).exists()
                                                     or any(p.startswith(u + os.sep) for u in under))]
    if prune:
        for start in range(0, len(gone), 200):
            kb.table.delete(" OR ".join(f"path = {_quote(p)}" for p in gone[start:start + 200]))
        summary.removed = sorted([*summary.removed, *(stored[p][0] for p in gone)])
    else:  # said, so a deleted file's answers do not go on silently
        summary.gone = sorted(stored[p][0] for p in gone)
    missing = kb.table.count_rows() > 0 and not kb.has_fts_index()  # a first ingest killed before its index
    if summary.chunks or summary.removed or summary.updated or missing:
        kb.ensure_fts_index()
        if kb.fragments() > OPTIMIZE_FRAGMENTS:
            kb.optimize()
        import time

        kb.meta.updated = time.time()
        kb.save_meta()


def reindex(name: str, embedder: str | None = None, progress: Progress | None = None) -> IngestSummary:
    """Rebuild a base from the files it was built from (they must still exist), with another embedder or its own
    (None): every file is read and chunked again, as this halguru does."""
    from halguru.rag.embedders import PROFILES, get_embedder

    old = KnowledgeBase.open(name)
    embedder = PROFILES.get(embedder or old.meta.embedder, embedder or old.meta.embedder)  # `fast`: wordllama
    get_embedder(embedder)  # fails here, before anything is dropped, if the new embedder cannot load
    # Built beside the old base, which takes searches (and refuses other ingests) until the new one is whole: a
    # killed or stopped re-index left a base with part of its documents, and the next re-index re-read only those.
    building, retired = old.folder.with_name(f".{name}.reindexing"), old.folder.with_name(f".{name}.replaced")
    with ingest_lock(old):
        old.reload_meta()  # as it is now: another re-index may have finished since it was opened
        paths, roots = _sources(old)
        meta = old.meta
        clear_leftovers(name)  # what a killed re-index left
        try:
            new = KnowledgeBase.create(name, embedder, meta.chunk_size, meta.chunk_overlap, folder=building)
            if meta.folder:  # a knowledge folder's base stays that folder's
                new.meta.folder = meta.folder
                new.save_meta()
            summary = ingest(new, list(roots), progress=progress, only=set(paths))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        old.folder.rename(retired)
        building.rename(old.folder)
        shutil.rmtree(retired, ignore_errors=True)
    return summary


def _sources(kb: KnowledgeBase) -> tuple[list[str], list[Path]]:
    """The keys of the files a base holds, and the folders they were ingested from (which gave each file its
    citation name); a file that is gone is one line."""
    documents = kb.documents()
    paths = sorted(documents)
    missing = [p for p in paths if not _on_disk(p).exists()]
    if missing:
        raise KnowledgeError(f"cannot re-index {kb.name!r}: {len(missing)} source files are gone (e.g. "
                             f"{missing[0]}); drop it and ingest again")
    roots: list[Path] = []
    for path, (source, _) in documents.items():
        root = _on_disk(path)
        for _ in Path(source).parts[1:]:
            root = root.parent
        if root not in roots:
            roots.append(root)
    return paths, roots


def clear_leftovers(name: str) -> None:
    """Delete what a killed re-index of base ``name`` left beside it (the new base half built, or the old one
    after the swap: up to a full copy). Called under the base's lock, so no re-index is running."""
    folder = base_folder(name)
    for leftover in (f".{name}.reindexing", f".{name}.replaced"):
        shutil.rmtree(folder.with_name(leftover), ignore_errors=True)
