"""Turn files into text: Markdown, AsciiDoc and Org, plain text, HTML, PDF (text layer), manual pages (troff), GNU
info manuals, Perl POD and source code, each also gzipped.

Every problem a file can have (unreadable, binary, empty, enormous, a PDF without a
text layer, a dangling symlink, a FIFO) becomes a ``Skip`` with a reason, so one bad
file never aborts an ingest and none vanishes unlisted. What a parser only warns about
(pypdf repairing a damaged PDF) is kept in ``Document.warnings`` instead of going to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 20 * 1024 * 1024  # past this a file is more likely a dump than a document

MARKDOWN = {".md", ".markdown", ".mdx"}
TEXT = {".txt", ".text", ".rst", ".adoc", ".org", ".csv", ".log", ""}
HTML = {".html", ".htm", ".xhtml"}
PDF = {".pdf"}
POD = {".pod"}  # Perl's documentation (perldoc pages)
CODE = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h", ".cc", ".cpp", ".hpp",
    ".cs", ".rb", ".php", ".swift", ".scala", ".sh", ".bash", ".sql", ".lua", ".r", ".m", ".toml", ".yaml",
    ".yml", ".json", ".ini", ".cfg", ".css", ".scss", ".vue", ".svelte", ".dart", ".ex", ".exs", ".erl", ".hs",
    ".pl", ".pm",
}
SUPPORTED = MARKDOWN | TEXT | HTML | PDF | POD | CODE
COMPRESSED = ".gz"  # any of the above, gzipped (read decompressed, up to MAX_BYTES)
_MAN_SECTION = re.compile(r"^\.[1-9][a-z]{0,4}$")  # a manual page's troff source: ls.1, GET.1p, CA.pl.1ssl
_INFO_MARKS = re.compile(rb"\x00\x08\[[^\x00]*\x00\x08\]")
_INFO_INDEX = re.compile(rb"\x00\x08\[index\x00\x08\][^\x1f]*")  # an index node's menu, up to the next node
_INFO_HEADER = re.compile(r"^File: [^\n]*,\s+Node: [^\n]*$", re.M)
_INFO_PART = re.compile(r"^\.info-\d{1,3}$")  # a GNU info manual's part: coreutils.info-2
# reStructuredText's link targets (``.. _auth:``): a label for cross-references, no text; left at the top of a
# page, it would be the page's first chunk, on its own
_RST_TARGET = re.compile(r"^\.\. _[^:\n]+:[ \t]*$", re.M)
# Plain text whatever follows the name: README.Debian, changelog.Debian.gz, README.source
DOC_NAMES = {"readme", "changelog", "changes", "news", "install", "todo", "faq", "copying", "authors", "history",
             "notes", "thanks", "bugs", "hacking"}
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".mypy_cache",
             ".ruff_cache", ".pytest_cache", "dist", "build"}
# Left out of a folder's walk and listed as skipped (a Sphinx project's docs/build/html is the documentation);
# hidden folders and __pycache__ (compiled files only) are left out without a word
SAID_DIRS = {"node_modules", "venv", "dist", "build"}


@dataclass
class Document:
    """A loaded file: its text and the kind that decides how it is chunked."""

    path: Path
    text: str
    kind: str  # markdown | text | html | pdf | code
    title: str = ""  # what the file names itself (an HTML page's <title>); else the chunker finds one
    warnings: list[str] = field(default_factory=list)  # what the parser repaired or ignored


@dataclass
class Skip:
    path: Path
    reason: str

    @property
    def summary(self) -> str:
        """The reason without its parenthesised detail (a parser's exception, an OS error): what a web visitor
        is told; the operator's listings keep the whole reason."""
        return self.reason.split(" (", 1)[0]


def file_type(path: Path) -> str:
    """The extension that decides how a file is read: a gzipped file's is its inner one (``NEWS.gz``: no
    extension, ``guide.md.gz``: ``.md``), as most of Debian's /usr/share/doc is gzipped."""
    if path.suffix.lower() == COMPRESSED:
        inner = path.with_suffix("").suffix
        return f"{inner}{path.suffix}" if inner.lower() == COMPRESSED else inner
    return path.suffix


def kind_of(path: Path) -> str | None:
    suffix = file_type(path).lower()
    if suffix in MARKDOWN:
        return "markdown"
    if suffix in HTML:
        return "html"
    if suffix in PDF:
        return "pdf"
    if suffix in CODE:
        return "code"
    if _MAN_SECTION.match(suffix):
        return "man"
    if suffix == ".info" or _INFO_PART.match(suffix):
        return "info"
    if suffix in POD:
        return "pod"
    if suffix in TEXT or path.name.split(".")[0].lower() in DOC_NAMES:
        return "text"
    return None


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is no regular file to read (a dangling symlink, a FIFO...), or None when it is one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            with contextlib.suppress(OSError):
                return f"dangling symlink (to {os.readlink(path)})"
            return "dangling symlink"
        return "no such file or folder"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device")):
        if test(mode):
            return f"not a regular file ({what})"
    return None


def discover(paths: list[Path]) -> tuple[list[Path], list[Skip]]:
    """Expand folders into the files we can read (hidden and build folders left out).

    Anything else found is listed with its reason: an unsupported type, a dangling symlink, a FIFO, a
    socket or device, a symlink to a folder (not followed), a folder that cannot be read.
    """
    files: list[Path] = []
    skipped: list[Skip] = []
    for root in paths:
        if root.is_dir():
            _walk(root, files, skipped)
        elif (reason := not_a_file(root)) is not None:
            skipped.append(Skip(root, reason))
        else:
            files.append(root)  # named explicitly: try it whatever its extension
    return files, skipped


def _walk(root: Path, files: list[Path], skipped: list[Skip]) -> None:
    def unreadable(exc: OSError) -> None:
        skipped.append(Skip(Path(exc.filename or root), f"unreadable folder ({exc.strerror or exc})"))

    for folder, dirs, names in os.walk(root, onerror=unreadable):
        here = Path(folder)
        skipped += [Skip(here / d, "a build or dependency folder, not read (to index it, give the folder itself to "
                              "`halguru kb ingest`)") for d in sorted(dirs) if d in SAID_DIRS]
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for d in dirs:
            if (here / d).is_symlink():
                skipped.append(Skip(here / d, "symlink to a folder (not followed; ingest its target instead)"))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = here / name
            if (reason := not_a_file(path)) is not None:
                skipped.append(Skip(path, reason))
            elif kind_of(path) is None:
                skipped.append(Skip(path, f"unsupported file type {file_type(path) or '(no extension)'}"))
            else:
                files.append(path)


def fingerprint(root: Path) -> int:
    """A cheap stamp of a folder's files (names, sizes, modification times; no reads).

    It changes when ``discover`` would find another set of files or any of them changed, so a
    caller can skip an ingest while it stays the same. A missing folder has a stamp of its own.
    """
    entries: list[tuple[str, int, int, int]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.startswith(".") or entry.name in SKIP_DIRS:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file():
                            st = entry.stat()
                            entries.append((entry.path, st.st_size, st.st_mtime_ns, st.st_ino))
                    except OSError:
                        continue
        except OSError:
            entries.append((str(folder), -1, -1, -1))  # gone or unreadable
    return hash(tuple(sorted(entries)))


def read_bytes(path: Path, max_bytes: int | None = None) -> bytes | Skip:
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Skip(path, f"too large ({size / 2**20:.1f} MiB > {max_bytes / 2**20:.0f} MiB)")
        return path.read_bytes()
    except OSError as exc:
        return Skip(path, f"unreadable ({exc.strerror or exc})")


def info_text(text: str) -> str:
    """A GNU info file's text without its navigation: each node's ``File: ..., Node: ...`` header line and the
    separator before it become blank lines (so line numbers stay the file's), and the tag table at the end (byte
    offsets of the nodes) is left out, as is a split manual's table of its parts. A node's underlined title then
    heads its section."""
    text = re.split(r"\x1f\n(?:Tag Table|Indirect):", text, maxsplit=1)[0]
    return _INFO_HEADER.sub("", text.replace("\x1f", ""))


def _gunzip(path: Path, data: bytes) -> bytes | Skip:
    """A gzipped file's content, read no further than MAX_BYTES (a small file can unpack to gigabytes)."""
    import gzip
    import io
    import zlib

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
            content = unpacked.read(MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a cut file ends early (EOFError)
        return Skip(path, f"not a readable gzip file ({exc})")
    if len(content) > MAX_BYTES:
        return Skip(path, f"too large (over {MAX_BYTES / 2**20:.0f} MiB uncompressed)")
    return content


def load(path: Path, data: bytes, max_chars: int | None = None) -> Document | Skip:
    """Decode ``data`` (the file's bytes; gzipped ones are unpacked here) by the file's kind. ``max_chars``: the
    caller reads no further (an email's attachment), so a PDF's pages past it are not extracted."""
    if path.suffix.lower() == COMPRESSED:
        unpacked = _gunzip(path, data)
        if isinstance(unpacked, Skip):
            return unpacked
        data = unpacked
    kind = kind_of(path) or "text"
    if kind == "info":
        # An index node (a menu of every term with its node and line) would match any question and say nothing:
        # its lines are blanked, so line numbers stay the file's. Other NUL-backspace marks (images) are dropped.
        data = _INFO_MARKS.sub(b"", _INFO_INDEX.sub(lambda m: b"\n" * m.group().count(b"\n"), data))
    if not data.strip():
        return Skip(path, "empty file")
    if is_pdf(path, data):
        return _load_pdf(path, data, max_chars)
    wide = _wide_text(data)
    if wide is None and b"\x00" in data[:8192]:
        return Skip(path, "binary file")
    try:
        text = wide if wide is not None else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        mostly = _mostly_utf8(data)
        try:
            text = mostly if mostly is not None else data.decode("cp1252")
        except UnicodeDecodeError:
            return Skip(path, "not UTF-8 text")
    title = ""
    if kind == "markdown":
        from halguru.rag.front_matter import split_front_matter

        text, title = split_front_matter(text.replace("\r\n", "\n"))
    elif kind == "html":
        from halguru.rag.html import page_text

        title, text = page_text(text)
        kind = "markdown"  # headings were turned into Markdown headings
    elif kind == "info":
        text = info_text(text)
        kind = "text"
    elif kind == "text" and file_type(path).lower() in (".adoc", ".org"):
        from halguru.rag.markup import asciidoc_to_markdown, org_to_markdown

        text = text.replace("\r\n", "\n")
        if file_type(path).lower() == ".org":
            text, title = org_to_markdown(text)
        else:
            text = asciidoc_to_markdown(text)
        kind = "markdown"  # their headings are Markdown's now, line for line
    elif kind == "text" and file_type(path).lower().startswith(".rst"):
        text = _RST_TARGET.sub("", text)  # blanked, not removed: line numbers stay the file's
    elif kind == "pod":
        from halguru.rag.pod import pod_to_markdown

        text, kind = pod_to_markdown(text), "markdown"  # line for line: a chunk's lines are the file's
    elif kind == "man":
        from halguru.rag import troff

        if (target := troff.link_target(text)) is not None:
            return Skip(path, f"a link to the manual page {target} (ingest that page)")
        if troff.LOOKS_LIKE_TROFF.search(text):
            text = troff.man_to_text(text)  # laid out as `man` shows it: its sections and options are found
        kind = "text"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Skip(path, "no text")
    return Document(path, text, kind, title=title)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def _captured(logger_name: str) -> Iterator[list[str]]:
    """The warnings ``logger_name`` logs inside the block, kept from stderr and returned."""
    import warnings

    logger = logging.getLogger(logger_name)
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield handler.messages
        handler.messages += [str(w.message) for w in caught if w.category is not DeprecationWarning]
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def is_pdf(path: Path, data: bytes) -> bool:
    """Read as a PDF: named one, or starting as one whatever its name."""
    return kind_of(path) == "pdf" or data[:5] == b"%PDF-"


def _load_pdf(path: Path, data: bytes, max_chars: int | None = None) -> Document | Skip:
    import io

    with _captured("pypdf") as warned:
        try:
            from pypdf import PdfReader

            reader = PdfReader(io.BytesIO(data))
            pages: list[str] = []
            for page in reader.pages:  # extracting is slow (~6 ms a page): a mail's 3,000-page PDF took 19 s
                pages.append((page.extract_text() or "").strip())
                if max_chars is not None and sum(map(len, pages)) > max_chars:
                    break
        except Exception as exc:  # pypdf raises many types on damaged files
            return Skip(path, f"unreadable PDF ({type(exc).__name__}: {exc})")
    if not any(pages):
        return Skip(path, "PDF has no text layer (scanned?); run OCR on it first")
    pages = _without_running_lines(pages)
    # One heading per page so that chunks cite "file.pdf#page 3".
    text = "\n\n".join(f"# page {i}\n\n{t}" for i, t in enumerate(pages, 1) if t)
    repaired = ["pypdf: " + "; ".join(dict.fromkeys(warned))] if warned else []
    return Document(path, text, "markdown", warnings=repaired)


def _without_running_lines(pages: list[str], edge: int = 2) -> list[str]:
    """Pages without their running headers and footers: a line among the first or last ``edge`` of at least
    half the pages (and 3), page numbers counted alike (``Chapter 3 · 27``, ``- 28 -``). Left in, they would
    open and close every chunk and cut paragraphs that run on to the next page."""
    def key(line: str) -> str:
        return re.sub(r"\d+", "#", " ".join(line.split()).lower())

    split = [[line for line in page.splitlines() if line.strip()] for page in pages]
    seen: dict[str, int] = {}
    for lines in split:
        for found in {key(line) for line in lines[:edge] + lines[-edge:]}:
            seen[found] = seen.get(found, 0) + 1
    running = {k for k, n in seen.items() if n >= max(3, len(pages) / 2)}
    if not running:
        return pages
    kept = []
    for lines in split:
        edges = {*range(min(edge, len(lines))), *range(max(0, len(lines) - edge), len(lines))}
        drop = {i for i in edges if key(lines[i]) in running}
        kept.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return kept


_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _wide_text(data: bytes) -> str | None:
    """Text saved as UTF-16 or UTF-32 with its byte-order mark (Windows Notepad's "Unicode", PowerShell's `>`),
    decoded; None for anything else. Its every other byte is a NUL, so it was skipped as a binary file."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                return None
    return None


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 text with a few stray bytes (a paste from elsewhere), those replaced; None when it reads as another
    encoding (Latin-1's accents are lone bytes, never valid UTF-8 sequences). Read as Windows-1252 instead, its
    every accent became two characters ("CrÃ¨me"), and a single curly quote beside it skipped the whole file."""
    text = data.decode("utf-8-sig", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for c in text if ord(c) > 127 and c != "\ufffd")
    return text if good >= bad > 0 else None
