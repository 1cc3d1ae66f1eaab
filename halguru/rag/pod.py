"""Perl's POD (Plain Old Documentation: ``perldoc`` pages, every ``.pod`` under /usr/share/perl) as Markdown.

Line for line, so a chunk's lines are the file's: ``=head1 NAME`` becomes ``# NAME`` (so a page is titled by its
NAME line, as a manual page is), ``=item TERM`` a bullet holding the term, the other commands (``=over``,
``=back``, ``=cut``, ``=encoding``...) and blocks meant for other formatters (``=begin html`` ... ``=end html``)
blank lines; formatting codes are unwrapped (``C<$obj-E<gt>parse>`` reads ``$obj->parse``). Verbatim (indented)
paragraphs are kept as they are, code outside the POD blocks of a file is left out.
"""

from __future__ import annotations

import re

_COMMAND = re.compile(r"^=([a-zA-Z]\w*)\s*(.*)$")
_HEAD = re.compile(r"^head([1-6])$")
# a formatting code with several brackets and spaces inside (``C<< $a->b >>``), which may hold ``>``
_WIDE_CODE = re.compile(r"([A-Z])<{2,}(\s+)(.*?)(\s+)>{2,}", re.S)
_CODE = re.compile(r"([A-Z])<([^<>]*)>")  # the innermost one-bracket code
_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "amp": "&", "quot": '"', "apos": "'", "nbsp": " "}


def _entity(name: str) -> str:
    """``E<gt>``'s character; a number is decimal, ``0x`` hexadecimal, a leading ``0`` octal."""
    if name in _ENTITIES:
        return _ENTITIES[name]
    base = 16 if name.lower().startswith("0x") else 8 if name.startswith("0") and len(name) > 1 else 10
    try:
        return chr(int(name, base))
    except (ValueError, OverflowError):
        return name


def _code(letter: str, inner: str) -> str:
    """One formatting code's text: a link's text (or its target), an entity's character, nothing for an index
    entry (``X<>``) or a zero-width code (``Z<>``), else what it wraps (bold, italic, code, file name)."""
    if letter == "E":
        return _entity(inner)
    if letter in "XZ":
        return "\n" * inner.count("\n")  # a paragraph keeps its lines
    if letter == "L":
        text, bar, _ = inner.partition("|")  # L<text|target>, else L<name/"section">: its words
        return text if bar else inner.replace('"', "").replace("/", " ").strip()
    return inner


def unwrap(text: str) -> str:
    """``text`` with its formatting codes replaced by what they show."""
    text = _WIDE_CODE.sub(lambda m: "\n" * m.group(2).count("\n") + _code(m.group(1), m.group(3))
                          + "\n" * m.group(4).count("\n"), text)  # a paragraph keeps its lines
    for _ in range(10):  # nested codes: the innermost first (``B<C<--all>>``); a stray ``<`` stops it
        unwrapped = _CODE.sub(lambda m: _code(m.group(1), m.group(2)), text)
        if unwrapped == text:
            break
        text = unwrapped
    return text


def pod_to_markdown(text: str) -> str:
    """A POD document as Markdown, one line for each of its lines (see the module's docstring)."""
    out: list[str] = []
    inside = False  # in a POD block (from a command to ``=cut``), not in the code around it
    skipping: str | None = None  # the format of a ``=begin FORMAT`` block being left out
    for_other = False  # in a ``=for FORMAT`` paragraph: for another formatter, left out
    paragraph_start = True  # the line follows a blank line: a command can start here
    ordinary: list[int] = []  # the lines of text paragraphs, whose formatting codes may span lines
    for line in text.split("\n"):
        command = _COMMAND.match(line) if paragraph_start else None
        paragraph_start = not line.strip()
        if for_other and not command:
            for_other = not paragraph_start
            out.append("")
            continue
        for_other = False
        if command:
            name, rest = command.group(1), command.group(2).strip()
            inside = name != "cut"
            if skipping is not None:
                if name == "end" and rest.split()[:1] == [skipping]:
                    skipping = None
                out.append("")
            elif name == "begin":
                skipping = rest.split()[0] if rest.split() else ""
                out.append("")
            elif head := _HEAD.match(name):
                out.append(f"{'#' * int(head.group(1))} {unwrap(rest)}" if rest else "")
            elif name == "item":
                term = unwrap(rest)  # ``=item *``, ``=item 2.``: a list's bullets, the paragraph after is its text
                out.append(f"- {term}" if term and not re.fullmatch(r"[*-]|\d+\.?", term) else "")
            else:  # =over, =back, =cut, =pod, =encoding, =for: no text
                for_other = name == "for"
                out.append("")
            continue
        if not inside or skipping is not None:
            out.append("")
        elif line[:1] in (" ", "\t"):
            out.append(line)  # verbatim: code, as written
        else:
            ordinary.append(len(out))
            out.append(line)
    # Each run of consecutive text lines is one paragraph: unwrapped whole, its line count kept
    runs: list[list[int]] = []
    for index in ordinary:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        lines = unwrap("\n".join(out[i] for i in run)).split("\n")
        if len(lines) != len(run):  # never expected; line by line then, so line numbers stay the file's
            lines = [unwrap(out[i]) for i in run]
        for i, line in zip(run, lines, strict=True):
            out[i] = line
    return "\n".join(out)
