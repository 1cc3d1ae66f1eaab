"""Knowledge bases on disk: one LanceDB folder each under HALGURU_HOME/knowledge/NAME (or knowledge_path/NAME).

Several processes share a base (serve replicas on one shared folder): an ingest holds the base's lock file, and
every read checks for a newer LanceDB version, so a search sees what another process committed at once.

``meta.json`` records the embedder, its dimension and the chunking settings, so a base
is never queried or filled with vectors from another embedder. Writes are LanceDB
commits (atomic, versioned): a killed process leaves the last committed version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halguru.names import NAME_RULE
from halguru.rag.errors import KnowledgeError

if TYPE_CHECKING:
    from halguru.rag.chunk_matrix import ChunkMatrix

# Lance logs deprecation chatter to stderr from Rust; a user wants answers, not that.
os.environ.setdefault("LANCEDB_LOG", "error")

TABLE = "chunks"
META_FILE = "meta.json"
INGEST_FILE = "ingest.json"  # an ingest's files not yet in the base, from its start until it finishes
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LEAD_DIMENSIONS = {"mpnet": 768}
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 16, 1024  # tokens (chunking.count_tokens)


def _refuse_case_twin(name: str) -> None:
    """A new base whose name differs from an existing one's only in case (``CAFE`` beside ``cafe``) is refused:
    on macOS's and Windows' file systems both are one folder, so a copied HALGURU_HOME would mix their chunks."""
    root = knowledge_root()
    twins = [p.name for p in root.iterdir() if p.name != name and p.name.casefold() == name.casefold()
             and (p / META_FILE).exists()] if root.is_dir() else []
    if twins:
        raise KnowledgeError(f"knowledge base {twins[0]!r} exists, and names that differ only in case are one "
                             f"folder on macOS and Windows: use {twins[0]!r}, or another name")


def base_folder(name: str) -> Path:
    """The folder of base ``name``; a name that is not one (a path, ``..``) is refused, so no command reaches
    outside the knowledge root (`kb drop /some/folder` deleted it)."""
    if not NAME_PATTERN.fullmatch(name):
        raise KnowledgeError(f"invalid knowledge base name {name!r}: {NAME_RULE} (not a path, at most 64 "
                             "characters)")
    return knowledge_root() / name


def check_chunking(size: int, overlap: int) -> None:
    """KnowledgeError for chunk sizes no base is made with. The embedders read a chunk's first 128 word pieces
    (~100 tokens) and an agent puts 4 chunks in its prompt: a larger chunk is found by its words alone and fills
    the model's context (with no bound, a whole file was one chunk)."""
    if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
        raise KnowledgeError(f"chunk size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} tokens, not {size}")
    if not 0 <= overlap < size:
        raise KnowledgeError(f"chunk overlap must be 0 to {size - 1} tokens (less than the chunk size), not {overlap}")


def knowledge_root() -> Path:
    from halguru.config import get_settings

    settings = get_settings()
    return settings.knowledge_path.expanduser() if settings.knowledge_path else settings.home / "knowledge"


@dataclass
class KnowledgeMeta:
    name: str
    embedder: str
    dimension: int
    chunk_size: int = 256
    chunk_overlap: int = 32
    created: float = field(default_factory=time.time)
    updated: float = 0.0
    # the model of each document's lead vector (the "lead" column: hybrid search's lead vote), "" where the lead
    # vote uses the chunk's own vector (bases built before it, or where its weights are not installed)
    lead_model: str = ""
    folder: str = ""  # an agent's knowledge folder that this base mirrors (resolved path); "" for other bases
    chunker: int = 0  # the CHUNKER_VERSION its files were chunked with (0: before versions were recorded)


@dataclass
class KnowledgeInfo:
    """What ``kb list`` and ``kb show`` print."""

    name: str
    embedder: str
    dimension: int
    documents: int
    chunks: int
    size_bytes: int
    path: str
    chunk_size: int
    chunk_overlap: int
    sources: list[str] = field(default_factory=list)
    lead_model: str = ""
    chunker: int = 0
    unfinished: str = ""  # what an ingest that did not finish (or runs now) left out of the base, as a search says


def _schema(dimension: int, lead_model: str = "") -> Any:
    import pyarrow as pa

    lead = [("lead", pa.list_(pa.float32(), LEAD_DIMENSIONS[lead_model]))] if lead_model else []
    return pa.schema([
        ("id", pa.string()),
        ("path", pa.string()),  # absolute path: the key for incremental ingest and --prune
        ("source", pa.string()),  # what citations show, e.g. docs/guide.md
        ("doc_hash", pa.string()),
        ("heading", pa.string()),
        ("line_start", pa.int32()),
        ("line_end", pa.int32()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
        ("search_text", pa.string()),  # source, heading and text: what BM25 indexes
        ("vector", pa.list_(pa.float32(), dimension)),
        *lead,  # first chunks only (null elsewhere): the lead model's vector of the document's lead
    ])


# folder -> (metadata mtime, open base), for KnowledgeBase.cached
_OPEN: dict[Path, tuple[int, KnowledgeBase]] = {}


class KnowledgeBase:
    """One knowledge base: its metadata and its LanceDB table (opened lazily)."""

    def __init__(self, name: str, folder: Path, meta: KnowledgeMeta):
        self.name = name
        self.folder = folder
        self.meta = meta
        self._table: Any = None
        self._leads: tuple[int, dict[str, Any]] | None = None  # (table version, source -> lead vector)
        self._matrix: ChunkMatrix | None = None  # the chunks in memory (``nearest``)
        self._first_search: int | None = None  # the table version ``nearest`` was last asked about first
        self._matrix_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, embedder: str | None = None, chunk_size: int = 256, chunk_overlap: int = 32,
               exist_ok: bool = False, folder: Path | None = None) -> KnowledgeBase:
        """A new, empty base; ``folder``: built elsewhere than its name's folder (a re-index, moved in after)."""
        from halguru.rag.chunking import CHUNKER_VERSION
        from halguru.rag.embedders import PROFILES, default_embedder, get_embedder

        folder = folder or base_folder(name)
        if (folder / META_FILE).exists():
            if exist_ok:
                return cls.open(name)
            raise KnowledgeError(f"knowledge base {name!r} already exists; ingest into it with "
                                 f"`halguru kb ingest {name} PATH` or drop it with `halguru kb drop {name}`")
        _refuse_case_twin(name)
        check_chunking(chunk_size, chunk_overlap)
        model = get_embedder(PROFILES.get(embedder or "", embedder) or default_embedder())
        meta = KnowledgeMeta(name, model.name, model.dimension, chunk_size, chunk_overlap,
                             lead_model=default_lead_model(model.name), chunker=CHUNKER_VERSION)
        from halguru.rag.lean_import import lancedb

        made = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = lancedb().connect(str(folder))
            # No metadata, so no base: a table left here (meta.json deleted, a create killed before it wrote it)
            # holds chunks nothing can read, maybe another embedder's vectors; the new base starts without them.
            db.drop_table(TABLE, ignore_missing=True)
            (folder / INGEST_FILE).unlink(missing_ok=True)  # a killed ingest's note of files the table held
            db.create_table(TABLE, schema=_schema(meta.dimension, meta.lead_model))
            kb = cls(name, folder, meta)
            kb.save_meta()  # last: a base exists once its metadata does
        except (OSError, RuntimeError) as exc:  # a full disk: LanceDB's RuntimeError named a Rust source file
            if made:
                shutil.rmtree(folder, ignore_errors=True)  # no folder left that is not a base
            raise KnowledgeError(f"cannot create knowledge base {name!r} in {folder.parent}: {write_problem(exc)}; "
                                 "nothing was created") from None
        return kb

    @classmethod
    def cached(cls, name: str) -> KnowledgeBase:
        """An open base reused across searches (reopening costs ~3 ms a query); reopened when its
        metadata file changes (reindex, drop and create)."""
        folder = base_folder(name)
        try:
            stamp = (folder / META_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            _OPEN.pop(folder, None)
            return cls.open(name)  # raises the clear "no knowledge base" error
        hit = _OPEN.get(folder)
        if hit is None or hit[0] != stamp:
            hit = (stamp, cls.open(name))
            _OPEN[folder] = hit
        return hit[1]

    @classmethod
    def open(cls, name: str) -> KnowledgeBase:
        folder = base_folder(name)
        try:
            data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            # The other bases' names help on a terminal; a client of a served agent is not to learn them.
            create = f"create it with `halguru kb create {name}`"
            raise KnowledgeError(f"no knowledge base {name!r}; {create}",
                                 terminal=f"no knowledge base {name!r} ({_known(name)}); {create}") from None
        except (OSError, ValueError) as exc:
            raise KnowledgeError(f"knowledge base {name!r}: unreadable {folder / META_FILE}: {exc}; restore the "
                                 f"file, or drop the base with `halguru kb drop {name}`") from None
        return cls(name, folder, _meta(name, folder, data))

    def reload_meta(self) -> bool:
        """Read ``meta.json`` again (an ingest that waited for the lock: the base may have been re-indexed or
        dropped meanwhile); True when its embedder, dimension or lead model changed, so the caller embeds with the
        new ones. A base dropped meanwhile is one line, before anything is written to its folder."""
        try:
            data = json.loads((self.folder / META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KnowledgeError(f"knowledge base {self.name!r} was dropped while this ingest waited for it; "
                                 "nothing was ingested") from None
        except (OSError, ValueError) as exc:
            raise KnowledgeError(f"knowledge base {self.name!r}: unreadable {self.folder / META_FILE}: "
                                 f"{exc}") from None
        fresh = _meta(self.name, self.folder, data)
        old, self.meta = self.meta, fresh
        self.refresh()  # a re-index swapped in another table under the same folder name
        return (old.embedder, old.dimension, old.lead_model) != (fresh.embedder, fresh.dimension, fresh.lead_model)

    def save_meta(self) -> None:
        tmp = self.folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self.meta), indent=2), encoding="utf-8")
        tmp.replace(self.folder / META_FILE)

    def drop(self) -> None:
        shutil.rmtree(self.folder)

    # -- an ingest under way -------------------------------------------------------------------------

    def begin_ingest(self, command: str, new: list[str]) -> None:
        """Note, before an ingest writes, the files it adds (keys not in the base yet) and the command that runs it
        again, so a search of the base meanwhile, or after a kill, Ctrl-C or full disk stopped it, says which are
        not searched (``unfinished``). Best effort: on a full disk the ingest still runs, unnoted."""
        import socket

        self._write_ingest({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                            "command": command, "new": new})

    def stop_ingest(self) -> None:
        """The ingest stopped before it finished, its process going on (Ctrl-C or Esc in `chat`/`dev`, a full
        disk): its note stays, no longer naming a process that runs it."""
        try:
            note = json.loads((self.folder / INGEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(note, dict):
            self._write_ingest({**note, "pid": 0})

    def _write_ingest(self, note: dict[str, Any]) -> None:
        tmp = self.folder / (INGEST_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(note), encoding="utf-8")
            tmp.replace(self.folder / INGEST_FILE)
        except OSError:
            tmp.unlink(missing_ok=True)

    def end_ingest(self) -> None:
        """The ingest finished: every file it found is in the base."""
        (self.folder / INGEST_FILE).unlink(missing_ok=True)

    def unfinished(self, documents: dict[str, tuple[str, set[str]]] | None = None) -> str:
        """One line on the files an unfinished ingest has not put in the base yet (it runs now, or it was killed,
        stopped or failed), with the command that finishes it; "" when none is missing. ``documents``: the base's
        as ``documents()`` gave them, read here when not given (a scan, only while an ingest's note is there)."""
        found = self.missing_files(documents)
        if found is None:
            return ""
        missing, files, running, command = found
        from halguru.printable import printable_name

        example = f" (e.g. {printable_name(Path(missing[0]).name)})"
        if running:
            return (f"an ingest of {self.name} is running ({running}): {len(missing)} of the {files} file(s) it "
                    f"adds are not searched yet{example}")
        return (f"the last ingest of {self.name} did not finish (stopped, killed or failed): {len(missing)} of the "
                f"{files} file(s) it was adding are not searched{example}; run `{command}` to finish it")

    def missing_files(self, documents: dict[str, tuple[str, set[str]]] | None = None
                      ) -> tuple[list[str], int, str, str] | None:
        """(the keys of the files an unfinished ingest was adding that the base lacks, how many it was adding,
        "pid N" while it runs or "", the command that finishes it), or None when it lacks none."""
        import socket

        try:
            note = json.loads((self.folder / INGEST_FILE).read_text(encoding="utf-8"))
            pid, host, command = int(note["pid"]), str(note["host"]), str(note["command"])
            new = [str(key) for key in note["new"]]
        except (OSError, ValueError, TypeError, KeyError):  # none (or not one of ours: says nothing it cannot know)
            return None
        stored = self.documents() if documents is None else documents
        missing = [key for key in new if key not in stored]
        if not missing:
            return None
        running = f"pid {pid}" if pid and host == socket.gethostname() and _alive(pid) else ""
        return missing, len(new), running, command

    @property
    def table(self) -> Any:
        if self._table is None:
            from halguru.rag.lean_import import lancedb

            # Every read checks for newer versions, so a cached base sees what another ingest committed.
            db = lancedb().connect(str(self.folder), read_consistency_interval=timedelta(0))
            try:
                self._table = db.open_table(TABLE)
            except (FileNotFoundError, ValueError):
                self._table = db.create_table(TABLE, schema=_schema(self.meta.dimension, self.meta.lead_model),
                                              exist_ok=True)
        return self._table

    def refresh(self) -> None:
        """See commits made by other processes (an ingest running beside a search)."""
        self._table = None
        self._leads = None
        self._matrix = None

    def leads(self) -> dict[str, Any]:
        """Each document's lead vector (hybrid search's lead vote), by source: the lead model's vector of its first
        chunk, or that chunk's own vector in a base without a lead model. Read in one scan and kept until the
        table's version changes, so a search in a long-lived process scans nothing (~14 ms a query on 5,800
        chunks before) and a commit by any process is seen at the next search. Costs 1.5-3 KB a document."""
        import numpy as np

        version = self.table.version
        if self._leads is None or self._leads[0] != version:
            column = "lead" if self.meta.lead_model else "vector"
            rows = (self.table.search().where(f"chunk_index = 0 AND {column} IS NOT NULL")
                    .select(["source", column]).limit(max(1, self.table.count_rows())).to_arrow())
            vectors = np.asarray(rows.column(column).combine_chunks().values, dtype=np.float32)
            matrix = vectors.reshape(rows.num_rows, -1) if rows.num_rows else vectors.reshape(0, 0)
            self._leads = (version, dict(zip(rows.column("source").to_pylist(), matrix, strict=True)))
        return self._leads[1]

    def nearest(self, vector: list[float], k: int, columns: list[str]) -> list[dict[str, Any]] | None:
        """The ``k`` chunks nearest ``vector``, found by NumPy over the chunks held in memory
        (``halguru.rag.chunk_matrix``: 0.4 ms against LanceDB's ~9 ms), or None where LanceDB is to answer: at the
        first search of a table version in this process (so a one-shot ``kb search`` loads nothing), for columns
        not held, or in a base of more than ``MAX_CHUNKS`` chunks."""
        from halguru.rag.chunk_matrix import COLUMNS, MAX_CHUNKS, ChunkMatrix

        if not set(columns) <= set(COLUMNS):
            return None
        version = self.table.version
        with self._matrix_lock:
            held = self._matrix
            if held is None or held.version != version:
                if self._first_search != version:
                    self._first_search = version
                    return None
                if self.table.count_rows() > MAX_CHUNKS:
                    return None
                held = self._matrix = ChunkMatrix.load(self.table, version)
        return held.nearest(vector, k, columns)

    # -- embedder --------------------------------------------------------------------------------------

    def lead_encoder(self, notify: Callable[[str], None] | None = None) -> Any:
        """The base's lead model (``embed(texts)`` -> normalised vectors), or None where it has none; ``notify``
        hears of its one-time preparation."""
        if not self.meta.lead_model:
            return None
        from halguru.rag import mpnet

        return mpnet.encoder(notify)

    def embedder(self, override: str | None = None) -> Any:
        """The base's embedder; another one is refused because its vectors would not compare."""
        from halguru.rag.embedders import PROFILES, get_embedder

        override = PROFILES.get(override, override) if override else override  # `fast`: the embedder it names
        if override and override != self.meta.embedder:
            raise KnowledgeError(
                f"knowledge base {self.name!r} was built with embedder {self.meta.embedder!r}, not {override!r}; "
                f"re-index it with `halguru kb reindex {self.name} --embedder {override}`")
        missing = self.missing_embedder()
        if missing is not None:
            raise KnowledgeError(missing)
        model = get_embedder(self.meta.embedder)
        if model.dimension != self.meta.dimension:
            raise KnowledgeError(
                f"knowledge base {self.name!r} holds {self.meta.dimension}-dimensional vectors but "
                f"{self.meta.embedder!r} now gives {model.dimension}; re-index it with "
                f"`halguru kb reindex {self.name} --embedder {self.meta.embedder}`")
        return model

    def missing_embedder(self) -> str | None:
        """Why the base's embedder cannot be built in this process (a plugin's, not loaded now), or None; nothing
        is loaded, so `halguru validate` and `serve`'s start-up ask it of every base."""
        from halguru.rag.embedders import unavailable_embedder

        problem = unavailable_embedder(self.meta.embedder)
        return None if problem is None else f"knowledge base {self.name!r}: {problem}"

    # -- inspection ------------------------------------------------------------------------------------

    def documents(self) -> dict[str, tuple[str, set[str]]]:
        """path -> (source, content hashes stored for it); two hashes mean an interrupted update."""
        found: dict[str, tuple[str, set[str]]] = {}
        rows = self.table.count_rows()
        if rows == 0:
            return found
        columns = self.table.search().select(["path", "source", "doc_hash"]).limit(rows).to_arrow().to_pydict()
        for path, source, digest in zip(columns["path"], columns["source"], columns["doc_hash"], strict=True):
            found.setdefault(path, (source, set()))[1].add(digest)
        return found

    def info(self, with_sources: bool = False) -> KnowledgeInfo:
        """The base's figures; files of it deleted (a data file of its table) are one KnowledgeError saying what
        to do (`kb show` was LanceDB's RuntimeError traceback)."""
        try:
            docs = self.documents()
            size = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())
            rows = self.table.count_rows()
        except (RuntimeError, OSError) as exc:
            from halguru.rag.query import unreadable

            raise unreadable(self, exc) from None
        return KnowledgeInfo(self.name, self.meta.embedder, self.meta.dimension, len(docs), rows, size,
                             str(self.folder), self.meta.chunk_size, self.meta.chunk_overlap,
                             sorted(s for s, _ in docs.values()) if with_sources else [], self.meta.lead_model,
                             self.meta.chunker, self.unfinished(docs))

    def fragments(self) -> int:
        return int(self.table.stats()["fragment_stats"]["num_fragments"])

    def optimize(self) -> int:
        """Compact fragments, update indexes and drop old versions; returns the fragments left."""
        from datetime import timedelta

        self.table.optimize(cleanup_older_than=timedelta(minutes=5), delete_unverified=False)
        return self.fragments()

    def has_fts_index(self) -> bool:
        return any(index.index_type == "FTS" for index in self.table.list_indices())

    def ensure_fts_index(self) -> None:
        from halguru.rag.lean_import import lancedb

        lancedb()
        from lancedb.index import FTS

        self.table.create_index("search_text", config=FTS(with_position=False), replace=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (an ingest's, not killed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it runs
        return True
    return True


def default_lead_model(embedder: str) -> str:
    """The lead model of a new base: all-mpnet-base-v2 beside minilm where its weights are installed (chosen on
    bench_kb.py's dev splits for minilm only), else none."""
    from halguru.rag import mpnet

    return mpnet.NAME if embedder.partition(":")[0] == "minilm" and mpnet.installed() else ""


def _meta(name: str, folder: Path, data: Any) -> KnowledgeMeta:
    """A base's metadata; keys a newer halguru may have added are left out, a file that is no mapping or
    lacks what every base records is one clear error."""
    known = {f.name for f in fields(KnowledgeMeta)}
    try:
        return KnowledgeMeta(**{k: v for k, v in dict(data).items() if k in known})
    except (TypeError, ValueError) as exc:
        raise KnowledgeError(f"knowledge base {name!r}: {folder / META_FILE} is not a base's metadata ({exc}); "
                             f"drop the folder {folder} if it is not one") from None


_LANCE_ERROR = re.compile(r"^(?:.*?LanceError\(\w+\): |lance error: )(.*?)(?:, /\S+\.rs:\d+:\d+|$)")


def write_problem(exc: BaseException) -> str:
    """What a failed write says, in one line: LanceDB's ``lance error: LanceError(IO): No space left on device
    (os error 28), /root/.cargo/.../structural.rs:191:9`` becomes ``No space left on device (os error 28)``, and
    ``lance error: Not found: FILE, /root/.cargo/.../local.rs:273:40`` (a data file deleted) ``Not found: FILE``,
    as does a missing data folder's ``Generic N/A error: Wrapped error: Not found: Wrapped error: ...``."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    found = _LANCE_ERROR.search(text)
    text = found.group(1) if found else text
    # a missing data folder: "Generic N/A error: Wrapped error: Not found: Wrapped error: Not found: FILE"
    text = _NOT_FOUND.sub("Not found: ", _WRAPPED.sub("", text))
    return text[:300]


_WRAPPED = re.compile(r"Generic \S+ error: |Wrapped error: ")
_NOT_FOUND = re.compile(r"(?:Not found: )+")


KNOWN_SHOWN = 20  # bases a missing name's error lists; past that, `kb list` has them all


def _known(name: str) -> str:
    """What a mistyped base name's terminal error says of the others: the closest one first, then the first
    ``KNOWN_SHOWN`` names (every base of a busy machine made a line of hundreds, the typo left to spot)."""
    from halguru.errors import did_you_mean

    names = list_names()
    hint = did_you_mean(name, names).strip(" ()")
    known = ", ".join(names[:KNOWN_SHOWN]) or "none yet"
    if len(names) > KNOWN_SHOWN:
        known += f", ... ({len(names)} in all: `halguru kb list`)"
    return f"{hint}; known: {known}" if hint else f"known: {known}"


def list_names() -> list[str]:
    root = knowledge_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if NAME_PATTERN.fullmatch(p.name) and (p / META_FILE).is_file())


def list_bases(problems: list[str] | None = None) -> list[KnowledgeInfo]:
    """Every base's figures; one that cannot be read (a damaged folder, foreign metadata) is left out and said in
    ``problems``, so the others are still listed."""
    bases = []
    for name in list_names():
        try:
            bases.append(KnowledgeBase.open(name).info())
        except Exception as exc:  # LanceDB raises RuntimeError, OSError, ValueError... on damaged data
            if problems is not None:
                said = isinstance(exc, KnowledgeError)  # names the base already, and says what to do
                problems.append(str(exc) if said else f"knowledge base {name!r} cannot be read: {exc}")
    return bases
