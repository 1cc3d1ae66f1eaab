"""AsciiDoc and Org documents as Markdown, line for line, so that their sections are found.

Read as plain text, their headings (``== Installing``, ``** On Debian``) were lines like any other: no section
headed a chunk, and a heading could end one chunk while its body began the next. Only what structures the page
is rewritten, each line in place (a chunk's lines stay the file's): headings become Markdown headings of the
same depth, and listing and source blocks (AsciiDoc's ``----``, Org's ``#+BEGIN_SRC``) become fenced code, so
a ``* item`` or ``== x`` inside one is no heading. Org's ``#+TITLE:`` is the document's title.
"""

from __future__ import annotations

import re

_ADOC_HEADING = re.compile(r"^(={1,6})\s+(\S.*)$")
_ADOC_FENCE = re.compile(r"^(-{4,}|\.{4,})\s*$")  # a listing or literal block's delimiter
_ORG_HEADING = re.compile(r"^(\*{1,6})\s+(\S.*)$")
_ORG_TITLE = re.compile(r"^#\+title:\s*(.*\S)", re.I | re.M)
_ORG_BLOCK = re.compile(r"^\s*#\+(begin|end)_(src|example)\b", re.I)


def asciidoc_to_markdown(text: str) -> str:
    """An AsciiDoc document's headings (``= Title``, ``== Section``) as Markdown's, its listing blocks fenced."""
    out: list[str] = []
    fence: str | None = None  # the delimiter of the open listing block
    for line in text.split("\n"):
        if fence is not None:
            if line.strip() == fence:
                fence, line = None, "```"
            out.append(line)
            continue
        if _ADOC_FENCE.match(line):
            fence = line.strip()
            out.append("```")
        elif heading := _ADOC_HEADING.match(line):
            out.append(f"{'#' * len(heading.group(1))} {heading.group(2)}")
        else:
            out.append(line)
    return "\n".join(out)


def org_to_markdown(text: str) -> tuple[str, str]:
    """(an Org document's text with its ``*`` headings as Markdown's and its source blocks fenced, its
    ``#+TITLE:``, or "")."""
    out: list[str] = []
    inside = False
    for line in text.split("\n"):
        block = _ORG_BLOCK.match(line)
        if (title := _ORG_TITLE.match(line)) and not inside:
            out.append(title.group(1))  # the title's words, without the keyword
        elif block:
            inside = block.group(1).lower() == "begin"
            out.append("```")
        elif not inside and (heading := _ORG_HEADING.match(line)):
            out.append(f"{'#' * len(heading.group(1))} {heading.group(2)}")
        else:
            out.append(line)
    first = _ORG_TITLE.search(text)
    return "\n".join(out), first.group(1) if first else ""
