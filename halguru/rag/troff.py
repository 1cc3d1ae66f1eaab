"""Manual pages in troff source (``ls.1``, ``ls.1.gz``) turned into text laid out as ``man`` shows it, so that
chunking finds their sections and option lists as in a rendered page: section titles at the margin, a section's
body indented 7 columns, a tagged paragraph's tag (``-a, --all``) over its explanation indented 7 more.

Only what a page's text and structure need is read: sections (``.SH``, ``.SS``), paragraphs, tagged and indented
paragraphs (``.TP``, ``.IP``, ``.RS``/``.RE``), no-fill blocks (``.nf``, ``.EX``), tables (``.TS``: their rows),
font macros (``.B``, ``.BR``...), links (``.UR``) and escapes (``\\fB``, ``\\-``, ``\\(em``...); of mdoc (BSD
pages) ``.Sh``, ``.Ss``, ``.Pp``, ``.It`` and the inline macros of a line (``Fl a`` is ``-a``). Requests that
only shape the output (registers, strings, conditionals, macro definitions, spacing) are left out.
"""

from __future__ import annotations

import re
import textwrap

WIDTH = 80
STEP = 7  # man's indent of a section's body, and of a tagged paragraph's body under its tag

LOOKS_LIKE_TROFF = re.compile(r"^[.'](?:TH|SH|Dd|Dt|Sh)\b", re.M)
_LINK = re.compile(r"^\.so\s+(\S+)\s*$", re.M)
_CHARS = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
    "co": "©", "rg": "®", "tm": "™", "bu": "•", "ga": "`", "ha": "^", "ti": "~", "pl": "+", "mu": "×", "di": "÷",
    ">=": "≥", "<=": "≤", "!=": "≠", "->": "→", "<-": "←", "bv": "|", "ba": "|", "sl": "/", "rs": "\\", "de": "°",
    "fm": "′", "sq": "□", "**": "*", "Lq": "“", "Rq": "”", "R": "®", "Tm": "™",
}
_ESCAPE = re.compile(
    r"\\(?:"
    r"(?P<comment>[\"#].*)"  # a comment, to the end of the line
    r"|[fFn](?:\[[^\]]*\]|\(..|.)"  # a font change, a register's value
    r"|s[-+]?(?:\d|\(\d\d|\[\d+\])"  # a size change
    r"|[*](?P<string>\[[^\]]*\]|\(..|.)"  # a defined string (\*(lq)
    r"|\((?P<char>..)|\[(?P<named>[^\]]*)\]"  # a named character
    r"|[hvwkloLDNSxXZbC]'[^']*'"  # motions, widths, drawing
    r"|\$\d|[,/&|^:%)dupzrtc{}]"  # nothing to show
    r"|(?P<space>[ ~0])"
    r"|(?P<other>.)"
    r")")
# mdoc's inline macros that only set a font or a meaning: their arguments print as they are
_MDOC_PLAIN = {"Ar", "Cm", "Pa", "Ev", "Va", "Fn", "Fa", "Ic", "Li", "Em", "Sy", "Dv", "Er", "Ad", "No", "Ta", "St",
               "At", "Bx", "Ux", "Ms", "Tn", "Ot", "Ft", "Cd", "Lb", "Mt", "Lk", "An", "Sx", "Vt"}
_MDOC_QUOTES = {"Dq": "“”", "Sq": "‘’", "Ql": "‘’", "Qq": '""', "Pq": "()", "Op": "[]", "Aq": "<>", "Bq": "[]"}
_MDOC_MACROS = _MDOC_PLAIN | set(_MDOC_QUOTES) | {"Nm", "Nd", "Fl", "Xr", "In", "Oo", "Oc", "Ns"}  # inline ones
_CLOSING = {".", ",", ";", ":", ")", "]", "?", "!"}


def link_target(source: str) -> str | None:
    """The page a source only points to (``.so man1/gzip.1``: gunzip's page is gzip's), or None."""
    requests = [line for line in source.splitlines() if line.strip() and not line.startswith('.\\"')]
    match = _LINK.match(requests[0]) if len(requests) == 1 else None
    return match.group(1) if match else None


def _escape(match: re.Match[str]) -> str:
    if match.group("comment") is not None:
        return ""
    for group in ("string", "char", "named"):
        name = match.group(group)
        if name is not None:
            name = name.strip("[]()") if group == "string" else name
            if group == "named" and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):  # \[u2014]: a Unicode code point
                return chr(int(name[1:], 16))
            return _CHARS.get(name, "" if group == "string" else name if len(name) == 1 else "")
    if match.group("space") is not None:
        return " "
    other = match.group("other")
    return {"e": "\\", "-": "-", ".": ".", "'": "'", "`": "`"}.get(other, other) if other is not None else ""


def text_of(line: str) -> str:
    """A line's text with troff's escapes resolved."""
    return _ESCAPE.sub(_escape, line.replace("\\\\", "\\e"))


def _arguments(rest: str) -> list[str]:
    """A request's arguments: words, or "quoted words" ("" inside quotes is one quote)."""
    return [word or quoted.replace('""', '"') for quoted, word in re.findall(r'"((?:[^"]|"")*)"?|(\S+)', rest)]


def _mdoc(words: list[str], name: str) -> str:
    """An mdoc line's macros resolved: ``Op Fl Fl apple`` is ``[--apple]``, ``Xr stat 2`` is ``stat(2)``, a bare
    ``Nm`` is the page's ``name``."""
    out: list[str] = []
    glue = False
    at = 0
    while at < len(words):
        word, at = words[at], at + 1
        if word in _MDOC_QUOTES:  # quotes the rest of the line
            inner = _mdoc(words[at:], name)
            word, at = _MDOC_QUOTES[word][0] + inner + _MDOC_QUOTES[word][1], len(words)
        elif word == "Xr" and at < len(words):
            word, at = words[at] + (f"({words[at + 1]})" if at + 1 < len(words) else ""), at + 2
        elif word == "In" and at < len(words):
            word, at = f"<{words[at]}>", at + 1
        elif word == "Nm":
            if at < len(words) and words[at] not in _MDOC_MACROS:
                continue  # the name itself follows
            word = name
        elif word in {"Nd", "Fl", "Oo", "Oc", "Ns"} or word in _MDOC_PLAIN:
            piece = {"Nd": "-", "Fl": "-", "Oo": "[", "Oc": "]"}.get(word)
            if piece is not None:
                out.append(out.pop() + piece if glue and out else piece)
            glue = word in {"Fl", "Ns", "Oo"}
            continue
        if out and (glue or word in _CLOSING):
            out[-1] += word
        else:
            out.append(word)
        glue = False
    return text_of(" ".join(out))


class _Page:
    """The output being laid out: filled paragraphs wrapped at WIDTH, at the current indent; a tagged paragraph's
    tag goes on its body's first line when it fits in the body's indent (``-d     print debugging information``),
    on a line of its own over the body when it does not (``-s, --separator=STRING``), as ``man`` does."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.words: list[str] = []
        self.base = 0  # the indent of a paragraph's body
        self.indent = 0  # the indent of the text being filled now
        self.stack: list[int] = []
        self.tag: str | None = None  # a tag waiting for its body
        self.tag_at = 0
        self.title_at = 0  # how many lines there were when the last section title was written

    def flush(self) -> None:
        first = " " * self.indent
        if self.tag is not None:
            room = self.indent - self.tag_at
            if self.words and len(self.tag) < room:
                first = " " * self.tag_at + self.tag.ljust(room)
            else:
                self.lines.append(" " * self.tag_at + self.tag)
            self.tag = None
        if self.words:
            self.lines += textwrap.wrap(" ".join(self.words), WIDTH, initial_indent=first,
                                        subsequent_indent=" " * self.indent, break_long_words=False,
                                        break_on_hyphens=False) or [first]
            self.words = []

    def blank(self) -> None:
        self.flush()
        if self.lines and self.lines[-1] and len(self.lines) != self.title_at:  # none right under a title
            self.lines.append("")

    def put(self, text: str, indent: int, keep_indent: bool = False) -> None:
        self.flush()
        self.lines.append(" " * indent + (text.rstrip() if keep_indent else text.strip()))

    def section(self, title: str, indent: int) -> None:
        self.blank()
        self.put(title, indent)
        self.title_at = len(self.lines)
        self.base = self.indent = STEP
        self.stack = []

    def tagged(self, tag: str | None, width: str | None = None) -> None:
        """A tagged or indented paragraph: its body ``width`` ens (default 7) right of the current base."""
        self.blank()
        digits = re.match(r"\d+", width or "")
        self.indent = self.base + (int(digits.group()) if digits else STEP)
        if tag:
            self.tag, self.tag_at = tag, self.base


def man_to_text(source: str) -> str:
    """A troff manual page (man or mdoc macros) as text laid out like ``man``'s output."""
    reader = _Reader()
    for raw in re.sub(r"(?<!\\)\\\n", "", source).splitlines():  # a line ending in a backslash goes on
        reader.line(raw)
    reader.page.flush()
    return "\n".join(reader.page.lines).strip("\n") + "\n"


class _Reader:
    """Reads a page line by line into a ``_Page``."""

    def __init__(self) -> None:
        self.page = _Page()
        self.fill = True
        self.table = 0  # 0: not in a table, 1: reading its options and format, 2: its rows
        self.separator = "\t"  # between a table's cells
        self.skipping = False  # inside a macro definition
        self.want: str | None = None  # what the next text line is: "SH"/"SS" (a title), "TP" (a tag)
        self.url = ""
        self.title = ""  # the page's name, for mdoc's bare ``.Nm``

    def line(self, raw: str) -> None:
        if self.skipping:
            self.skipping = not re.fullmatch(r"\.\s*\.", raw.strip())  # ".." ends it (". ." inside a block)
            return
        if raw.startswith(('.\\"', "'\\\"", '.\\#')):
            return
        if self.table == 1:  # a table's options and column formats, up to the line that ends in "."
            self.separator = (re.findall(r"\btab\s*\((.)\)", raw) or [self.separator])[0]
            self.table = 0 if raw.startswith(".TE") else 2 if raw.rstrip().endswith(".") else 1
            return
        if raw[:1] in {".", "'"}:
            name, _, rest = raw[1:].strip().partition(" ")
            line = self.request(name, _arguments(rest))
            if not line:
                return
        elif self.table == 2:
            line = text_of(raw.replace(self.separator, "    ").replace("T{", "").replace("T}", ""))
            if not line.strip():
                return
        else:
            line = text_of(raw)
        self.text(line)

    def text(self, line: str) -> None:
        page = self.page
        if self.want in {"SH", "SS"}:
            page.section(line, 0 if self.want == "SH" else 3)
        elif self.want == "TP":
            page.flush()
            page.tag, page.tag_at = line.strip(), page.base
        elif not self.fill or self.table == 2:
            page.put(line, page.indent, keep_indent=True)
        elif not line.strip():
            page.blank()
        else:
            if line.startswith(" "):  # troff breaks before a line that starts with a space
                page.flush()
            page.words.append(line.strip())
        self.want = None

    def request(self, name: str, args: list[str]) -> str:
        """Do what request ``name`` asks; the text it prints, if any."""
        page = self.page
        if name in {"SH", "Sh", "SS", "Ss"}:
            if args:
                page.section(text_of(" ".join(args)), 0 if name in {"SH", "Sh"} else 3)
            else:
                self.want = name.upper()
        elif name in {"PP", "LP", "P", "HP", "Pp", "Lp"}:
            page.blank()
            page.indent = page.base
        elif name == "TP":
            page.tagged(None, args[0] if args else None)
            self.want = "TP"
        elif name == "IP":
            page.tagged(text_of(args[0]) if args else None, args[1] if len(args) > 1 else None)
        elif name == "It":
            page.tagged(_mdoc(args, self.title) if args else None)
        elif name in {"D1", "Dl"}:  # one displayed line
            page.put(_mdoc(args, self.title), page.indent + STEP)
        elif name in {"RS", "Bl", "Bd"}:
            page.flush()
            page.stack.append(page.base)
            page.base = page.indent = page.base + STEP if name != "Bl" else page.base
            self.fill = "-filled" in args if name == "Bd" else self.fill
        elif name in {"RE", "El", "Ed"}:
            page.flush()
            page.base = page.indent = page.stack.pop() if page.stack else max(page.base - STEP, STEP)
            self.fill = True if name == "Ed" else self.fill
        elif name in {"br", "nf", "EX", "fi", "EE", "TS"}:
            page.flush()
            if name in {"nf", "EX", "fi", "EE"}:  # no-fill (lines as they are) and back
                self.fill = name in {"fi", "EE"}
            if name == "TS":
                self.table, self.separator = 1, "\t"
        elif name in {"sp", "Sp"}:
            page.blank()
        elif name in {"de", "de1", "am", "ig"}:  # a macro definition or ignored block, up to ".."
            self.skipping = True
        elif name == "TE":
            self.table = 0
        elif name in {"UR", "MT"}:
            self.url = args[0] if args else ""
        elif name in {"UE", "ME"}:
            return f"<{self.url}>" + "".join(args) if self.url else ""
        elif name == "SY":
            page.blank()
            return text_of(" ".join(args))
        return self._inline(name, args)

    def _inline(self, name: str, args: list[str]) -> str:
        """The text of a request that prints its arguments (font macros, mdoc's inline macros), else ""."""
        if name in {"B", "I", "SM", "SB", "R"}:
            return text_of(" ".join(args))
        if len(name) == 2 and name[0] in "BIR" and name[1] in "BIR":  # .BR ls (1): alternating fonts
            return text_of("".join(args))
        if name == "OP":
            return "[" + text_of(" ".join(args)) + "]"
        if name in _MDOC_MACROS:
            self.title = args[0] if name == "Nm" and args and not self.title else self.title
            return _mdoc([name, *args], self.title)
        return ""
