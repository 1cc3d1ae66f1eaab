"""Structure-aware chunking: sections by heading, paragraphs and code blocks kept whole where they fit.

Headings are Markdown headings (``#``, and setext: one line over ``===`` or ``---``), and in plain text (man
pages, pydoc, RFC-style documents, info manuals) upper-case section titles (``OPTIONS``), numbered section titles
(``3.1. Overview``) and underlined titles, whatever their case (a title over a line of ``=``, ``-``, ``*`` or ``.``
as long as it: an info node's ``10.1 ‘ls’: List directory contents``, reStructuredText), and mixed-case titles at
the margin over an indented body of prose (an RFC's ``Status of this Memo``, an info manual's ``Character
classes``). An RFC's page footers and headers are left out, so a paragraph cut by a page break is one again. An
option or term list entry (``-a, --all`` followed by its more indented explanation) is one unit: it is kept whole
in one chunk when it fits, and its term joins the heading path (``OPTIONS > -a, --all``) so that every piece of a
long entry still names it. In code, ``class`` and ``def`` lines name the heading (``Foo > bar``).

Sizes are in approximate tokens (words and punctuation marks, ~1.3 per English
word, close to what BPE embedders see) so that no tokenizer has to load to chunk.
Every chunk keeps its heading path and the 1-based line range it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# Raised when a change moves what a file's chunks are (their bounds, headings or titles). A base records the
# version it was chunked with: an ingest skips unchanged files, so a base from before a change keeps its old
# chunks; its ingests and `kb show` say so, `kb reindex NAME` re-reads it, and an agent's folder base is re-read
# by itself. 1: list items and ``---%<---`` code no longer name sections (2026-12-06).
CHUNKER_VERSION = 1

# CJK characters are a token each (BERT's word pieces split them so; ``\w+`` took a whole sentence as one);
# a run of letters and digits longer than _LONG_RUN (a hex blob) counts one more token per _PER_TOKEN characters
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_LONG_RUN, _PER_TOKEN = 24, 8
_ASCII_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_UPPER_TITLE = re.compile(r"^[A-Z][A-Z0-9 ,/&()'-]{1,60}$")
_NUMBERED_TITLE = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+([A-Z][^.]{1,70})$")
# a deeper number is a section's even when its title starts in lower case (an RFC's ``3.2.2 http URL``)
_DEEP_NUMBERED_TITLE = re.compile(r"^(\d{1,2}(?:\.\d{1,2})+)\.?\s+([a-z\"'‘(][^.]{0,70})$")
BODY_TITLE_LEVEL = 9  # deeper than any numbered section: see _body_title
_APPENDIX_TITLE = re.compile(r"^Appendix ([A-Z](?:\.\d{1,2})*)\.?\s+(\S.{0,70})$")
_NUMBERED_TITLES = (_NUMBERED_TITLE, _DEEP_NUMBERED_TITLE, _APPENDIX_TITLE)  # group 1: the number, its depth
# An RFC's or Internet-Draft's page furniture: the footer ``Fielding, et al.   Standards Track   [Page 19]``
# and the next page's header ``RFC 2616   HTTP/1.1   June 1999``, left between two halves of a paragraph.
_PAGE_FOOTER = re.compile(r"^\S.*\s\[Page \d+\]\s*$")
_PAGE_HEADER = re.compile(r"^(?:RFC \d{1,5}|Internet-Draft)\s{2,}\S.*\s{2,}\S.*\b\d{4}\s*$")
_UNDERLINE = re.compile(r"^(=+|-+|\*+|\.+|~+|\^+)$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_UNDERLINE_LEVELS = {"*": 1, "=": 2, "-": 3, ".": 4, "~": 4, "^": 5}  # info's chapter, section, subsection...
# "-C NUM, --context=NUM", "-a, --all", "-c     explanation": option names, then all-caps or <> arguments
_OPTION = re.compile(r"^(\s*)([-+]{1,2}[A-Za-z0-9?#][^\s,]*(?:,? [-+]{1,2}[^\s,]+|[ =]\[?(?:[A-Z][A-Z_]*|<[^>]+>)\]?)*"
                     r",?)(?:\s{2,}\S.*)?$")
# a list item's marker: a bullet or an item number (`` * 'host=s': The destination...``, ``1.     The words``);
# ``*``, ``-`` and ``+`` one space before the text, as a term (bash's ``*      Matches any string``) is not
_LIST_ITEM = re.compile(r"^\s*(?:[\u2022\u00b7]\s+|\d{1,3}[.)]\s+|[*+-] )(?=\S)")
# a plain-text code fence: MoinMoin's text export (Dovecot's wiki pages) opens and closes each code block so
_SCISSORS = re.compile(r"^-{3,}%<-{3,}\s*$")
_CODE_NAME = re.compile(r"^(\s*)(?:async\s+def|def|class|func|fn|function|pub fn|sub)\s+(\w+)")


def count_tokens(text: str) -> int:
    tokens = (_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text)  # ASCII has no CJK: the faster pattern
    if tokens and len(max(tokens, key=len)) > _LONG_RUN + _PER_TOKEN - 1:
        return sum(map(_weight, tokens))
    return len(tokens)


def _weight(token: str) -> int:
    return 1 + max(0, len(token) - _LONG_RUN) // _PER_TOKEN


def _hard_split(word: str, size: int) -> list[str]:
    """A "word" of more than ``size`` tokens (a minified script's line, JSON written without spaces, CJK text
    with none) cut at token boundaries into pieces of at most ``size`` tokens; a single run longer than that
    (a hex blob) by characters."""
    pieces: list[str] = []
    start = tokens = 0
    for match in _TOKEN.finditer(word):
        weight = _weight(match.group())
        if tokens and tokens + weight > size:
            pieces.append(word[start:match.start()])
            start, tokens = match.start(), 0
        tokens += weight
    pieces.append(word[start:])
    step = _LONG_RUN + size * _PER_TOKEN
    return [piece[i:i + step] for piece in pieces for i in range(0, len(piece), step)]


@dataclass
class Chunk:
    text: str
    heading: str  # "Install > From source", "" before any heading
    line_start: int
    line_end: int


@dataclass
class _Block:
    lines: list[str]
    start: int  # 1-based line number of lines[0]
    heading: str
    code: bool = False
    title: bool = False  # a heading line: starts a new chunk, never a chunk on its own

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def tokens(self) -> int:
        return count_tokens(self.text)


def _markdown_blocks(text: str) -> list[_Block]:
    """Paragraphs, whole fenced code blocks and headings (which set the heading path)."""
    blocks: list[_Block] = []
    path: list[tuple[int, str]] = []
    current: _Block | None = None
    fence: str | None = None

    def heading() -> str:
        return " > ".join(title for _, title in path)

    for number, line in enumerate(text.split("\n"), 1):
        if fence is not None:
            assert current is not None
            current.lines.append(line)
            if line.strip().startswith(fence):
                fence, current = None, None
            continue
        match = _FENCE.match(line)
        if match:
            fence = match.group(1)
            current = _Block([line], number, heading(), code=True)
            blocks.append(current)
            continue
        match = _HEADING.match(line)
        if match:
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
            current = _Block([line], number, heading(), title=True)
            blocks.append(current)
            current = None
            continue
        underline = _SETEXT.match(line)
        if underline and current is not None and not current.code and len(current.lines) == 1:
            # A setext heading: one line of text over "===" (level 1) or "---" (level 2); the underline stays out
            # of the text. Under a longer paragraph "---" is taken for a rule.
            level = 1 if underline.group(1)[0] == "=" else 2
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, current.lines[0].strip())]
            current.heading, current.title, current = heading(), True, None
            continue
        if not line.strip():
            current = None
            continue
        if current is None or current.code:
            current = _Block([], number, heading())
            blocks.append(current)
        current.lines.append(line)
    return blocks


def _plain_blocks(text: str) -> list[_Block]:
    """Blank-line separated blocks (paragraphs; in code, functions and classes mostly)."""
    blocks: list[_Block] = []
    current: _Block | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            current = None
            continue
        if current is None:
            current = _Block([], number, "")
            blocks.append(current)
        current.lines.append(line)
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _section_title(line: str) -> tuple[int, str] | None:
    """(level, title) when ``line`` is a plain-text section title: upper case, or numbered like ``3.1. Scope``.
    A numbered title is at the margin: `` 1. Give the login name`` (indented by one, as wiki exports and
    tables of contents write their lists) is a list item, whose number would otherwise replace the page's
    title in the heading of every section after it."""
    if _indent(line) > 1:
        return None
    stripped = line.strip()
    if _UPPER_TITLE.match(stripped) and sum(c.isalpha() for c in stripped) >= 3:
        return 1, stripped
    if _indent(line) > 0:
        return None
    match = next(filter(None, (title.match(stripped) for title in _NUMBERED_TITLES)), None)
    if match and not stripped.endswith((".", ",", ";", ":")):
        return match.group(1).count(".") + 1, stripped
    return None


def _without_page_furniture(text: str) -> str:
    """Page footers and headers (and form feeds) blanked, so that a paragraph broken by a page break is one
    block again and no chunk carries them; blanked, not removed, so that line numbers stay the file's."""
    if "[Page " not in text and "\f" not in text:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        bare = line.replace("\f", "")
        if _PAGE_FOOTER.match(bare) or _PAGE_HEADER.match(bare):
            lines[i] = ""
        elif bare != line:
            lines[i] = bare
    return "\n".join(lines)


def _underlined_title(block: _Block) -> tuple[int, str, int] | None:
    """(level, title, lines it takes) when ``block`` starts with a title line underlined by a line of one repeated
    mark as long as it (give or take a few columns): the level is the title's section number's depth where it has
    one (``10.1``: 2), else the mark's rank (``*`` chapter, ``=`` section, ``-`` subsection, ``.``). A title
    between two such lines (reStructuredText's page title: ``=====`` / `` Authentication System`` / ``=====``,
    often indented by one) heads the page: level 0, above every underlined section of it."""
    lines = block.lines
    if (len(lines) >= 3 and _is_rule(lines[0].strip(), lines[1].strip()) and lines[2].strip() == lines[0].strip()
            and _indent(lines[0]) == 0 and _indent(lines[1]) <= 2):
        return 0, lines[1].strip(), 3
    if len(lines) < 2 or _indent(lines[0]) > 1:
        return None
    title, rule = lines[0].strip(), lines[1].strip()
    if not _is_rule(rule, title):
        return None
    number = re.match(r"(\d{1,2}(?:\.\d{1,2})*)\.?\s", title)
    return (number.group(1).count(".") + 1 if number else _UNDERLINE_LEVELS[rule[0]]), title, 2


def _is_rule(rule: str, title: str) -> bool:
    """Whether ``rule`` is a line of one repeated mark about as long as ``title`` (and ``title`` names something)."""
    return bool(len(rule) >= 3 and _UNDERLINE.match(rule) and abs(len(rule) - len(title)) <= 3
                and any(c.isalnum() for c in title) and len(title) <= 100)


def _subsection_title(block: _Block, path: list[tuple[int, str]]) -> tuple[int, str] | None:
    """A man page's subsection (``   Generic Program Information``: indented by 2-3, followed by deeper lines)."""
    first = block.lines[0]
    stripped = first.strip()
    if (path and 2 <= _indent(first) <= 3 and len(block.lines) > 1 and _indent(block.lines[1]) > _indent(first)
            and len(stripped) <= 60 and stripped[:1].isupper() and not stripped.endswith((".", ",", ";"))):
        return path[0][0] + 1, stripped
    return None


def _body_title(block: _Block, following: _Block | None) -> tuple[int, str] | None:
    """A title in mixed case on a line of its own at the margin, over an indented body (an RFC's ``Status of
    this Memo``, an info manual's ``Character classes``): under the numbered or upper-case section it is in,
    the next such title or any section title ends it."""
    line = block.lines[0]
    stripped = line.strip()
    if not (len(block.lines) == 1 and _indent(line) == 0 and following is not None
            and 3 <= len(stripped) <= 60 and stripped[0].isupper() and not stripped.endswith((".", ",", ";", ":"))
            and sum(c.isalpha() for c in stripped) >= 3 and len(stripped.split()) <= 8):
        return None
    body = following.lines[0]
    # over prose (``   This document specifies...``), not over an example (``   grep -r PATTERN``) it leads into
    prose = body.strip()[:1].isupper() and len(" ".join(following.lines).split()) >= 12
    return (BODY_TITLE_LEVEL, stripped) if _indent(body) >= 3 and prose else None


def _entry_term(block: _Block) -> str | None:
    """The term of a definition-list entry (an option, a pydoc function): a short first line followed by
    more indented lines, or an option line (``-c  explanation``)."""
    first = block.lines[0]
    if len(first.strip()) > 80 or not any(c.isalnum() for c in first):  # a rule (``-----``) names nothing
        return None
    if first.rstrip().endswith(("{", "(", "[")):  # code or configuration opening a block (``passdb {``)
        return None
    if _list_item(block):  # a sentence of its section: naming the chunk, it was cut at 60 characters
        return None
    option = _OPTION.match(first)
    if (option and _indent(first) > 0) or (len(block.lines) > 1 and _indent(block.lines[1]) > _indent(first)):
        return re.split(r"\s{2,}", first.strip())[0][:60]
    return None


def _list_item(block: _Block) -> bool:
    """Whether ``block`` is a list item, its text wrapped under itself (`` * 'host=s': The destination server's
    hostname. This field is required for`` / ``   login referrals to be used.``) or over a nested list."""
    item = _LIST_ITEM.match(block.lines[0])
    if item is None or len(block.lines) == 1:
        return item is not None
    second = block.lines[1]
    return _indent(second) == item.end() or (_indent(second) > item.end() and bool(_LIST_ITEM.match(second)))


def _fenced_lines(text: str) -> set[int]:
    """The numbers of the lines between two ``---%<---`` fences (and of the fences)."""
    fenced: set[int] = set()
    inside = False
    for number, line in enumerate(text.split("\n"), 1):
        fence = bool(_SCISSORS.match(line))
        if inside or fence:
            fenced.add(number)
        inside ^= fence
    return fenced


def _text_blocks(text: str) -> list[_Block]:
    """Plain text: blank-line separated blocks under section titles; a definition-list entry and its more
    indented continuation paragraphs become one block whose heading ends with the entry's term."""
    blocks: list[_Block] = []
    path: list[tuple[int, str]] = []
    entry: tuple[int, _Block] | None = None  # (indent of its term, the merged block)
    plain = _plain_blocks(text)
    fenced = _fenced_lines(text)
    for index, whole in enumerate(plain):
        if whole.start in fenced:  # code: its ``LOOP`` or ``password_query = \`` is no title and no term
            whole.heading, entry = " > ".join(t for _, t in path), None
            blocks.append(whole)
            continue
        block: _Block | None = whole
        while block is not None:
            underlined = _underlined_title(block)
            title = (underlined[:2] if underlined else None) or _section_title(block.lines[0]) or \
                _subsection_title(block, path) or _body_title(block, plain[index + 1] if index + 1 < len(plain)
                                                              else None)
            if title is None:
                break
            level, name = title
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, name)]
            # the title, and its rules: in the line range, not in the text (a line of 40 "=" would be 40 of the
            # 128 word pieces an embedder reads of the chunk)
            used = underlined[2] if underlined else 1
            line = block.lines[1] if used == 3 else block.lines[0]  # an overlined title's own line
            blocks.append(_Block([line], block.start, " > ".join(t for _, t in path), title=True))
            entry = None
            block = _Block(block.lines[used:], block.start + used, "") if len(block.lines) > used else None
        if block is None:
            continue
        heading = " > ".join(t for _, t in path)
        if entry is not None and _indent(block.lines[0]) > entry[0]:
            merged = entry[1]
            gap = block.start - (merged.start + len(merged.lines))
            merged.lines += [""] * gap + block.lines
            continue
        term = _entry_term(block)
        block.heading = f"{heading} > {term}" if term and heading else (term or heading)
        # a list item keeps its more indented paragraphs (an example under a man page's bullet) as an entry does
        entry = (_indent(block.lines[0]), block) if term or _list_item(block) else None
        blocks.append(block)
    return blocks


def _code_blocks(text: str) -> list[_Block]:
    """Source code: blank-line separated blocks named by the class and function they are in (``Foo > bar``)."""
    blocks = _plain_blocks(text)
    stack: list[tuple[int, str]] = []
    for block in blocks:
        first = next((line for line in block.lines if not line.lstrip().startswith("@")), block.lines[0])
        match = _CODE_NAME.match(first)
        indent = _indent(first)
        if match:
            stack = [(i, n) for i, n in stack if i < indent] + [(indent, match.group(2))]
        elif stack and indent <= stack[-1][0] and first.strip() and not first.lstrip().startswith("#"):
            stack = [(i, n) for i, n in stack if i < indent]
        block.heading = " > ".join(n for _, n in stack)
    return blocks


def _split_block(block: _Block, size: int, overlap: int) -> list[_Block]:
    """A block larger than ``size``: cut by lines (by words for one giant line), with overlap."""
    pieces: list[_Block] = []
    lines: list[tuple[int, str]] = []
    for i, line in enumerate(block.lines):
        if count_tokens(line) <= size:
            lines.append((block.start + i, line))
            continue
        words = [piece for word in line.split(" ")
                 for piece in (_hard_split(word, size) if count_tokens(word) > size else [word])]
        step = max(1, int(size / 1.5))
        j = 0
        while j < len(words):  # ``step`` words, fewer where they hold more than ``size`` tokens
            end, tokens = j, 0
            while end < len(words) and end - j < step and (end == j or tokens + count_tokens(words[end]) <= size):
                tokens += count_tokens(words[end])
                end += 1
            lines.append((block.start + i, " ".join(words[j:end])))
            j = end
    start = 0
    while start < len(lines):
        end, tokens = start, 0
        while end < len(lines) and (end == start or tokens + count_tokens(lines[end][1]) <= size):
            tokens += count_tokens(lines[end][1])
            end += 1
        part = lines[start:end]
        pieces.append(_Block([t for _, t in part], part[0][0], block.heading, block.code, block.title))
        if end >= len(lines):
            break
        back, kept = end, 0
        while back - 1 > start and kept + count_tokens(lines[back - 1][1]) <= overlap:
            back -= 1
            kept += count_tokens(lines[back][1])
        start = back
    return pieces


def chunk_text(text: str, kind: str = "markdown", size: int = 256, overlap: int = 32) -> list[Chunk]:
    """Pack blocks into chunks of at most ``size`` tokens; a new heading starts a new chunk."""
    if size < 16:
        raise ValueError("chunk size must be at least 16 tokens")
    overlap = max(0, min(overlap, size // 2))
    if kind not in ("markdown", "code"):
        text = _without_page_furniture(text)
    blocks = {"markdown": _markdown_blocks, "code": _code_blocks}.get(kind, _text_blocks)(text)
    units: list[_Block] = []
    for block in blocks:
        units += _split_block(block, size, overlap) if block.tokens > size else [block]
    chunks = _pack(units, size, overlap)
    if not chunks and any(u.title for u in units):
        # Nothing but headings (a notes file of '# Wi-Fi password: ...' lines): their words are its text, not lost.
        chunks = _pack([replace(u, title=False) for u in units], size, overlap)
    return chunks


def _pack(units: list[_Block], size: int, overlap: int) -> list[Chunk]:
    """Blocks packed into chunks of at most ``size`` tokens; a heading starts a new chunk, never one on its own."""
    chunks: list[Chunk] = []
    group: list[_Block] = []
    tokens = 0

    def emit() -> None:
        body = "\n\n".join(b.text for b in group).strip()
        if body and not all(b.title for b in group):
            end = group[-1].start + len(group[-1].lines) - 1
            # The first entry (option, function) named in the chunk, else its section.
            named = max((b for b in group if not b.title), key=lambda b: b.heading.count(" > "), default=group[-1])
            chunks.append(Chunk(body, named.heading, group[0].start, end))

    for unit in units:
        is_heading = unit.title
        if group and (is_heading or tokens + unit.tokens > size):
            emit()
            # Overlap: carry the last whole blocks of the same section into the next chunk.
            carried: list[_Block] = []
            if not is_heading and overlap:
                kept = 0
                for b in reversed(group):
                    if kept + b.tokens > overlap or b.code or b.title:
                        break
                    carried.insert(0, b)
                    kept += b.tokens
            group, tokens = carried, sum(b.tokens for b in carried)
            if tokens + unit.tokens > size:
                group, tokens = [], 0
        group.append(unit)
        tokens += unit.tokens
    if group:
        emit()
    return chunks


def document_title(text: str, kind: str = "text") -> str:
    """What a document is about, in one line, to put beside every chunk of it (its words then count for each):
    a man or pydoc page's NAME line (with the first line of its DESCRIPTION when NAME is a bare name), a
    Markdown document's first heading, a Python module's docstring's first line."""
    lines = text.split("\n")[:400]
    if kind == "markdown":
        return _markdown_title(lines)[:120]
    if kind == "code":
        match = re.search(r'^\s*(?:#.*\n|\s*\n)*[rRbBuU]?("""|\'\'\')\s*(.+)', text[:4000])
        return match.group(2).strip().rstrip('"\'')[:120] if match else ""

    def section(name: str) -> str:
        for i, line in enumerate(lines):
            if line.strip() == name and _indent(line) <= 1:
                return next((x.strip() for x in lines[i + 1:i + 6] if x.strip()), "")
        return ""

    name = section("NAME")
    if name and " - " not in name:
        name = f"{name}: {section('DESCRIPTION')}".rstrip(": ")
    return (name or _centered_title(lines))[:120]


def _markdown_title(lines: list[str]) -> str:
    """A Markdown manual page's NAME line (``buildah\\-rename - Rename a local container.``, under a ``## NAME``
    among its first headings, as go-md2man and pandoc pages have), a pandoc title block's ``% title``, else the
    first heading."""
    headings: list[tuple[int, str]] = []
    fence = False
    for i, line in enumerate(lines):
        fence ^= bool(_FENCE.match(line))  # a shell comment in a code block is no heading
        if not fence and (match := _HEADING.match(line)):
            headings.append((i, match.group(2)))
    for i, title in headings[:3]:
        if title == "NAME":
            name = next((x.strip() for x in lines[i + 1:i + 6] if x.strip()), "")
            if name and not _HEADING.match(name):
                return re.sub(r"\\(.)", r"\1", name).replace("**", "").strip()
    if lines and lines[0].startswith("% ") and len(lines[0]) > 2:
        return lines[0][2:].strip()
    return headings[0][1] if headings else ""


def _centered_title(lines: list[str]) -> str:
    """A plain-text document's centred title line (an RFC's, under its front matter), before its first
    section: indented by 8 or more, words not a rule, with a blank line after it."""
    for i, line in enumerate(lines[:40]):
        if _section_title(line):
            break
        stripped = line.strip()
        if (_indent(line) >= 8 and 3 <= len(stripped) <= 100 and sum(c.isalpha() for c in stripped) >= 3
                and not stripped[0].islower() and not stripped.endswith((".", ",", ";", ":"))
                and "  " not in stripped and (i + 1 == len(lines) or not lines[i + 1].strip())):
            return stripped
    return ""
