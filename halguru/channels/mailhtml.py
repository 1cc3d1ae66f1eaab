"""HTML mail as plain text, read as a stream and only as far as the agent gets it.

The stdlib's event parser (``html.parser``) is fed the HTML in pieces and writes text as it goes, so reading
stops once there is text enough (``limit``) or after ``MAX_TAGS`` tags: building a whole tree first
(BeautifulSoup) took a minute for a 25 MB newsletter, of which the agent then got the first 60,000 characters.
Events, not a tree, also follow HTML's optional end tags: a ``<head>`` never closed ends at ``<body>``, where the
tree put the whole body inside the hidden head and the agent got an empty message.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

MAX_TAGS = 100_000  # past this many tags the rest is not read (20,000 rows of a table with 5 cells: 120,000)
CHUNK = 64 * 1024  # characters fed at a time (more while a construct longer than this is still open)
QUOTE_IN, QUOTE_OUT = "\ue000", "\ue001"  # where a blockquote begins and ends (private-use characters)

_HIDDEN = {"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe", "rp", "rt"}
_IN_HEAD = {"title", "style", "script", "meta", "link", "base", "noscript", "template"}
_BLOCKS = {"p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "ul", "ol", "tr",
           "table", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "dd", "dt", "hr"}


@dataclass(frozen=True)
class ReadText:
    text: str
    length: int  # the whole text's length: about, when the HTML was not read to its end
    cut: str | None = None  # why the HTML was not read to its end, when text enough was not the reason


class _Enough(Exception):
    """Raised from a handler to stop the parser: the rest is not read."""


class _TextWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.size = 0  # characters written
        self.tags = 0
        self.hidden: list[str] = []  # the hidden elements open, innermost last
        self.quotes = 0  # blockquotes open

    def _write(self, text: str) -> None:
        self.out.append(text)
        self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if self.tags > MAX_TAGS:
            raise _Enough
        if self.hidden and self.hidden[-1] == "head" and tag not in _IN_HEAD:
            self.hidden.pop()  # '</head>' is optional: the body's first element ends the head
        if tag in _HIDDEN:
            self.hidden.append(tag)
        elif self.hidden:
            return
        elif tag == "br":
            self._write("\n")
        elif tag == "blockquote":  # the quoted earlier mail: '>' lines, as a plain-text reply has
            self.quotes += 1
            self._write(f"\n{QUOTE_IN}\n")
        elif tag == "li":
            self._write("\n- ")
        elif tag in ("td", "th"):
            self._write(" ")  # cells of a row stay on one line, apart (closed or not)
        elif tag in _BLOCKS:
            self._write("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            if tag in self.hidden:  # a stray end tag closes nothing
                del self.hidden[len(self.hidden) - 1 - self.hidden[::-1].index(tag):]
        elif self.hidden:
            return
        elif tag == "blockquote":
            if self.quotes:
                self.quotes -= 1
                self._write(f"\n{QUOTE_OUT}\n")
        elif tag in ("td", "th"):
            self._write(" ")
        elif tag in _BLOCKS:
            self._write("\n")

    def handle_data(self, data: str) -> None:
        if self.hidden == ["head"] and data.strip():
            self.hidden.pop()  # words in no element of the head: the body began without its tag
        if not self.hidden:
            self._write(data.replace(QUOTE_IN, "").replace(QUOTE_OUT, ""))


def html_text(html: str, limit: int | None = None) -> ReadText:
    """``html`` as text: scripts, styles and comments vanish, blocks become lines, list items '- ' lines, a
    blockquote's lines start with '>' (one per level: ``strip_quoted`` then drops a reply's quoted history as in
    plain text), inline markup keeps the words around it apart. Read only until the text passes ``limit``
    characters, or for ``MAX_TAGS`` tags."""
    writer = _TextWriter()
    fed, cut = 0, None
    try:
        # text enough is checked between pieces (a piece adds at most CHUNK characters): the share of the HTML
        # read is then known, and the whole text's length told from it
        while fed < len(html) and (limit is None or writer.size <= limit):
            # a construct still open (a tag with a huge attribute) is read again with each piece: grow the
            # pieces with it, so a 25 MB one costs a few reads, not hundreds
            size = CHUNK + len(writer.rawdata)
            writer.feed(html[fed:fed + size])
            fed += size
        if fed >= len(html):
            writer.close()
    except _Enough:
        cut = f"its HTML has more than {MAX_TAGS:,} tags"
    text = _lines("".join(writer.out))
    if fed >= len(html) or cut:
        return ReadText(text, len(text), cut)
    return ReadText(text, int(len(text) * len(html) / max(fed, 1)))  # the rest as text-rich as what was read


def html_to_text(html: str) -> str:
    """All of ``html`` as text (``html_text`` without a limit)."""
    return html_text(html).text


def _lines(written: str) -> str:
    lines: list[str] = []
    depth = 0
    for line in written.splitlines():
        words = " ".join(line.split())
        if words in (QUOTE_IN, QUOTE_OUT):
            depth += 1 if words == QUOTE_IN else -1
        else:
            lines.append(f"{'>' * depth} {words}" if depth and words else words)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()
