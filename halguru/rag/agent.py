"""Knowledge for agents: resolve ``knowledge:`` entries, retrieve, number the sources, cite them.

An entry is a knowledge base name, or a folder (relative to agent.yaml) that is
ingested into the base ``AGENT-FOLDER`` and kept in step with it: before a
retrieval, a folder whose stat fingerprint changed (checked at most every
``RECHECK_SECONDS``) is ingested again, incrementally (new and changed files are
embedded, deleted ones removed, unchanged ones cost a hash). So a long-running
``halguru dev`` or ``halguru serve`` sees edits without a restart. The runtime
calls ``retrieve`` and turns each base's hits into a ``retrieval`` event.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halguru.printable import printable
from halguru.rag.errors import KnowledgeError
from halguru.rag.query import Hit, Mode

TOOL_NAME = "search_knowledge"
RECHECK_SECONDS = 1.0  # a knowledge folder is re-stat'ed at most this often
_LOCK = threading.Lock()  # guards _FOLDER_LOCKS and _SYNCED's clearing
_CITED = re.compile(r"\[(\d+)\]")


@dataclass
class BaseHits:
    knowledge_base: str
    hits: list[Hit]
    duration_ms: float


@dataclass
class Citations:
    """Numbers passages in the order a run first sees them, so [n] stays stable across tool calls.

    A number stands for one passage (file, section and line range), not for a whole file, so a marker in the
    answer points at the lines that support it; the footer lists only the passages the answer cites."""

    numbers: dict[tuple[str, str], int] = field(default_factory=dict)  # (knowledge base, reference) -> [n]

    def number(self, hit: Hit) -> int:
        """The passage's number: per base, as two bases can hold a file of one name (two passages numbered [1])."""
        return self.numbers.setdefault((hit.knowledge_base, reference(hit)), len(self.numbers) + 1)

    def label(self, hit: Hit) -> str:
        """The passage's reference, naming its base when a passage of another base has the same reference."""
        return self._label(hit.knowledge_base, reference(hit))

    def _label(self, base: str, ref: str) -> str:
        shared = any(other != base and r == ref for other, r in self.numbers)
        return f"{ref} ({base})" if shared and base else ref

    def footer(self, answer: str) -> str:
        """``Sources:`` with the passages the answer cites, one per marker; nothing when it cites none."""
        cited = {int(n) for n in _CITED.findall(answer)}
        chosen = sorted((n, self._label(*key)) for key, n in self.numbers.items() if n in cited)
        if not chosen:
            return ""
        return "\n\nSources:\n" + "\n".join(f"[{n}] {ref}" for n, ref in chosen)


def reference(hit: Hit) -> str:
    """``docs/guide.md#Install, lines 12-30``: the file, the section and the lines a passage came from."""
    return f"{hit.citation}, lines {hit.file_lines}" if hit.file_lines else hit.citation


@dataclass
class _Synced:
    fingerprint: int  # the folder's stamp when it was last ingested
    checked: float  # time.monotonic() of the last check
    warned: frozenset[tuple[str, str]] = frozenset()  # (path, reason) already reported for this folder


# (base folder, source folder) -> its last ingest: one entry per knowledge folder of the loaded agents
_SYNCED: dict[tuple[str, str], _Synced] = {}
# one lock per knowledge folder: while one is indexed (minutes for a few MB), the others are searched (one lock
# for all made every other agent's search wait for the whole ingest)
_FOLDER_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def folder_base(agent: str, folder: Path) -> str:
    """The base that mirrors an agent's knowledge folder: ``AGENT-FOLDER``, or that with a hash of the folder's
    path when that base mirrors another folder (two agents of one name in two projects shared one base, and each
    answered from the other's documents)."""
    import hashlib
    import json

    from halguru.rag.store import META_FILE, knowledge_root

    plain = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{agent}-{folder.name}")[:64]
    resolved = str(folder.resolve())
    try:
        owner = json.loads((knowledge_root() / plain / META_FILE).read_text(encoding="utf-8")).get("folder") or ""
    except (OSError, ValueError, AttributeError):
        owner = ""  # no base yet, or one made before bases recorded their folder: this folder takes it
    if owner in ("", resolved):
        return plain
    return f"{plain[:55]}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def seed_folder_base(agent: str, source: Path, folder: Path) -> bool:
    """Start the base of ``folder`` (a new copy of ``source``: a published agent's next version, which has a folder
    and so a base of its own) as a copy of ``source``'s base with its files keyed to ``folder``: the sync after it
    embeds only the files that differ (every file was embedded again: 400 s for a 1.4 MB folder on a busy 2-core
    machine, for a version that changed one line of agent.yaml). Whether it copied one; nothing when ``folder``'s
    base exists or ``source`` has none."""
    import json
    import os
    import secrets
    import shutil

    from halguru.rag.indexer import _key, _quote, ingest_lock
    from halguru.rag.store import META_FILE, KnowledgeBase, knowledge_root

    if not (source.is_dir() and folder.is_dir()):
        return False
    old_name, new_name = folder_base(agent, source), folder_base(agent, folder)
    old_dir, new_dir = knowledge_root() / old_name, knowledge_root() / new_name
    try:
        meta = json.loads((old_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("folder") != str(source.resolve()) or new_dir.exists():
        return False
    staging = knowledge_root() / f".seed-{secrets.token_hex(6)}"  # not a base's name: never listed
    try:
        with ingest_lock(KnowledgeBase.open(old_name), wait=True):  # a whole version of it, not one being written
            shutil.copytree(old_dir, staging)
        (staging / META_FILE).write_text(json.dumps({**meta, "name": new_name, "folder": str(folder.resolve())},
                                                    indent=2), encoding="utf-8")
        staging.rename(new_dir)
    except (OSError, KnowledgeError):
        shutil.rmtree(staging, ignore_errors=True)
        return False
    kb = KnowledgeBase.open(new_name)
    old_prefix, new_prefix = _key(source) + os.sep, _key(folder) + os.sep
    kb.table.update(values_sql={"path": f"replace(path, {_quote(old_prefix)}, {_quote(new_prefix)})"})
    kb.ensure_fts_index()
    return True


def sync_folder(name: str, folder: Path, embedder: str | None = None) -> None:
    """Bring base ``name`` up to date with ``folder`` if the folder changed since the last call; ``embedder``
    (the agent's ``retrieval.embedder``): the base is made with it, and rebuilt if it was made with another."""
    from halguru.rag.loaders import fingerprint
    from halguru.rag.store import META_FILE, knowledge_root

    base = knowledge_root() / name
    key = (str(base), str(folder))
    with _LOCK:
        folder_lock = _FOLDER_LOCKS.setdefault(key, threading.Lock())
    with folder_lock:
        state, now = _SYNCED.get(key), time.monotonic()
        if state is not None and now - state.checked < RECHECK_SECONDS:
            return
        stamp = fingerprint(folder)
        if state is not None and state.fingerprint == stamp and (base / META_FILE).exists():
            state.checked = now
            return
        from halguru.rag.indexer import ingest

        kb = _base(name, embedder, folder)
        first = kb.table.count_rows() == 0  # minutes for a few hundred pages: say why the run waits
        started = time.monotonic()
        summary = ingest(kb, [folder], prune="mirror", wait=True, progress=_announce(folder, name) if first else None)
        if first and summary.chunks:
            _say(f"knowledge folder {folder}: {summary.line()} in {time.monotonic() - started:.0f}s")
        problems = frozenset(summary.skipped + summary.warnings)
        _warn_skipped(folder, problems - (state.warned if state is not None else frozenset()))
        _SYNCED[key] = _Synced(stamp, time.monotonic(), problems)


def _base(name: str, embedder: str | None, folder: Path) -> Any:
    """The folder's base, made with ``embedder``; one made with another is rebuilt (a folder's base holds
    nothing but what the folder gives it again), as is one chunked by an older halguru (``CHUNKER_VERSION``). It
    records the folder it mirrors (``folder_base``). With no ``embedder``, the default one: minilm, or wordllama
    while minilm's weights are not installed (a base made before `halguru kb install-weights` moves to minilm)."""
    from halguru.rag.chunking import CHUNKER_VERSION
    from halguru.rag.embedders import PROFILES, default_embedder, get_embedder
    from halguru.rag.indexer import ingest_lock
    from halguru.rag.store import KnowledgeBase

    wanted = embedder or default_embedder()
    kb = KnowledgeBase.create(name, wanted, exist_ok=True)
    other = kb.meta.embedder != get_embedder(PROFILES.get(wanted, wanted)).name
    if other or kb.meta.chunker < CHUNKER_VERSION:  # chunked by an older halguru: its citations are re-read too
        with ingest_lock(kb):
            kb.drop()
            kb = KnowledgeBase.create(name, wanted if other else kb.meta.embedder)
    if kb.meta.folder != str(folder.resolve()):
        kb.meta.folder = str(folder.resolve())
        kb.save_meta()
    return kb


def _warn_skipped(folder: Path, problems: frozenset[tuple[str, str]]) -> None:
    """Say, once per file and reason, what a knowledge folder holds that its agent will not know."""
    for path, reason in sorted(problems):
        _say(f"warning: knowledge folder {folder}: not indexed or repaired: {path}: {reason}")


def _announce(folder: Path, name: str) -> Callable[[str, object], None]:
    """An ingest's progress callback that says, once it knows how many files there are, that a folder's base is
    being built (the first run of an agent waited minutes for it in silence)."""
    def progress(event: str, value: object) -> None:
        if event == "files" and value:
            files = f"{value} file{'' if value == 1 else 's'}"
            _say(f"indexing knowledge folder {folder} ({files}) into the base {name}; this run waits for it "
                 "(later runs read only the files that changed)")
    return progress


def _say(line: str) -> None:
    import sys

    print(f"halguru: {printable(line)}", file=sys.stderr, flush=True)


def forget_synced() -> None:
    """Forget which folders were ingested (the next retrieval checks them again)."""
    with _LOCK:
        _SYNCED.clear()


class KnowledgeRetriever:
    """The knowledge bases of one agent, resolved lazily on the first retrieval."""

    def __init__(self, entries: list[str], folder: Path | None, agent_name: str, top_k: int = 4,
                 mode: Mode = "hybrid", embedder: str | None = None):
        self.entries = entries
        self.embedder = embedder
        self.folder = folder
        self.agent_name = agent_name
        self.top_k = top_k
        self.mode = mode
        self._resolved: list[tuple[str, Path | None]] | None = None  # (base, its folder for a folder entry)

    def bases(self) -> list[str]:
        """The base names, folder entries first brought up to date with their folders."""
        if self._resolved is None:
            self._resolved = [self.resolve(entry) for entry in self.entries]
        for name, folder in self._resolved:
            if folder is not None:
                sync_folder(name, folder, self.embedder)
        return [name for name, _ in self._resolved]

    def resolve(self, entry: str) -> tuple[str, Path | None]:
        """The base an entry names, and its folder for a folder entry (not ingested); KnowledgeError if none."""
        from halguru.rag.store import NAME_PATTERN, list_names

        candidate = Path(entry).expanduser()
        if not candidate.is_absolute():
            candidate = (self.folder or Path.cwd()) / candidate
        if candidate.is_dir():
            return folder_base(self.agent_name, candidate), candidate
        if NAME_PATTERN.fullmatch(entry) and entry in list_names():
            return entry, None
        raise KnowledgeError(f"agent {self.agent_name}: knowledge: {entry!r} is neither a knowledge base "
                             f"(see `halguru kb list`) nor a folder next to agent.yaml")

    def missing_embedder(self, entry: str) -> str | None:
        """Why ``entry``'s base could not be searched in this process: its embedder (a named base's own; the one a
        folder's base is made with) is a plugin's that is not loaded; None when it is registered. Nothing is
        loaded or ingested; KnowledgeError when the entry names no base or folder (``resolve``)."""
        from halguru.rag.embedders import unavailable_embedder
        from halguru.rag.store import KnowledgeBase

        name, folder = self.resolve(entry)
        if folder is not None:  # its base is made (again) with this embedder, or the default one (always there)
            problem = unavailable_embedder(self.embedder) if self.embedder is not None else None
            return None if problem is None else f"retrieval.embedder: {problem}"
        try:
            return KnowledgeBase.open(name).missing_embedder()
        except KnowledgeError:  # a folder's base not made yet: it will be, with the default embedder
            return None

    def retrieve(self, query: str, k: int | None = None) -> list[BaseHits]:
        from halguru.rag.query import search

        results = []
        for name in self.bases():
            started = time.perf_counter()
            try:
                hits: list[Hit] = search(name, query, k=k or self.top_k, mode=self.mode)
            except KnowledgeError as exc:
                if "no documents yet" not in str(exc):
                    raise
                hits = []
            results.append(BaseHits(name, hits, (time.perf_counter() - started) * 1000))
        return results


def merged(results: list[BaseHits], k: int) -> list[Hit]:
    """Hits of several bases in one list: interleaved by rank, since their scores do not compare."""
    out: list[Hit] = []
    for rank in range(max((len(r.hits) for r in results), default=0)):
        out += [r.hits[rank] for r in results if rank < len(r.hits)]
    return out[:k]


def event_hits(result: BaseHits, citations: Citations) -> list[dict[str, Any]]:
    return [{"n": citations.number(h), "citation": h.citation, "source": h.source, "heading": h.heading,
             "lines": h.lines, "score": h.score, "text": h.text[:500]} for h in result.hits]


def context_block(hits: list[Hit], citations: Citations) -> str:
    """The sources as the model sees them, numbered for citation."""
    if not hits:
        return "No document matched the question."
    numbered = [(citations.number(h), h) for h in hits]  # all numbered first: a label sees every base's
    parts = [f"[{n}] {citations.label(h)}\n{h.text.strip()}" for n, h in numbered]
    return "\n\n".join(parts)


AUTO_PROMPT = ("Answer from these documents. Put the number of the passage that supports each fact right after "
               "it, like [1]. "
               "If they do not contain the answer, say so.\n\n{context}")


def knowledge_tool(agent: Any) -> Any:
    """``search_knowledge(query)`` over the agent's bases (also callable on its own, outside a run)."""
    from halguru.tools.decorator import tool

    def search_knowledge(query: str) -> str:
        retriever = agent.knowledge
        results = retriever.retrieve(query)
        return context_block(merged(results, retriever.top_k * len(results)), Citations())

    names = ", ".join(agent.spec.knowledge)
    return tool(name=TOOL_NAME, timeout=120.0, description=(
        f"Search the knowledge base ({names}) for passages about a question; returns numbered sources to cite "
        "like [1]."))(search_knowledge)
