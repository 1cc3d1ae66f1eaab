"""Structure-aware chunking: sections by heading, paragraphs and code blocks kept whole where they fit.

Sizes are in approximate tokens (words and punctuation marks, ~1.3 per English
word, close to what BPE embedders see) so that no tokenizer has to load to chunk.
Every chunk keeps its heading path and the 1-based line range it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


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
            current = _Block([line], number, heading())
            blocks.append(current)
            current = None
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


def _split_block(block: _Block, size: int, overlap: int) -> list[_Block]:
    """A block larger than ``size``: cut by lines (by words for one giant line), with overlap."""
    pieces: list[_Block] = []
    lines: list[tuple[int, str]] = []
    for i, line in enumerate(block.lines):
        if count_tokens(line) <= size:
            lines.append((block.start + i, line))
            continue
        words = line.split(" ")
        step = max(1, int(size / 1.5))
        lines += [(block.start + i, " ".join(words[j:j + step])) for j in range(0, len(words), step)]
    start = 0
    while start < len(lines):
        end, tokens = start, 0
        while end < len(lines) and (end == start or tokens + count_tokens(lines[end][1]) <= size):
            tokens += count_tokens(lines[end][1])
            end += 1
        part = lines[start:end]
        pieces.append(_Block([t for _, t in part], part[0][0], block.heading, block.code))
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
    blocks = _markdown_blocks(text) if kind == "markdown" else _plain_blocks(text)
    units: list[_Block] = []
    for block in blocks:
        units += _split_block(block, size, overlap) if block.tokens > size else [block]
    chunks: list[Chunk] = []
    group: list[_Block] = []
    tokens = 0

    def emit() -> None:
        body = "\n\n".join(b.text for b in group).strip()
        if body and not all(_HEADING.match(b.text) for b in group):
            end = group[-1].start + len(group[-1].lines) - 1
            chunks.append(Chunk(body, group[-1].heading, group[0].start, end))

    for unit in units:
        is_heading = kind == "markdown" and not unit.code and _HEADING.match(unit.text) is not None
        if group and (is_heading or tokens + unit.tokens > size):
            emit()
            # Overlap: carry the last whole blocks of the same section into the next chunk.
            carried: list[_Block] = []
            if not is_heading and overlap:
                kept = 0
                for b in reversed(group):
                    if kept + b.tokens > overlap or b.code or _HEADING.match(b.text):
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
