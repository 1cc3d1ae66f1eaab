"""A Markdown file's front matter: the YAML (``---``) or TOML (``+++``) block that documentation sites (Jekyll,
Hugo, Docusaurus, MkDocs, npm's own docs) put before the text, naming the page (``title:``) and saying what it
is for (``description:``).

Read as text it would be the document's first chunk (its lead, which votes for the whole document) while the page
is titled by its first heading, which on such sites is a section (``Synopsis`` on every npm command's page). So
its title and description become the document's title, and the block is replaced by that one line (the rest
blanked, so line numbers stay the file's): the lead says what the page is, as a man page's NAME line does.
"""

from __future__ import annotations

import re
from typing import Any

_MAX_LINES = 80  # a block longer than this is no page header
# Nor one bigger than this: pure-Python YAML took 23 s for a 1 MB flow sequence on one line, and 2 s for 8 KB of
# nested brackets; a web-chat attachment or an ingested file could make the reader pay that. Real ones are < 1 KB.
MAX_BYTES = 4096
_MAX_DEPTH = 32  # flow brackets ([ {) nested deeper than this: no page header (and seconds of the YAML parser)
_FENCES = {"---": ("---", "..."), "+++": ("+++",)}


def split_front_matter(text: str) -> tuple[str, str]:
    """(the text with its front matter replaced by the title line it gives, ``title - description``, and that
    title, or ``""``); a text without a well-formed block comes back as it is."""
    lines = text.split("\n", _MAX_LINES + 1)
    opener = lines[0].strip()
    if opener not in _FENCES:
        return text, ""
    end = next((i for i, line in enumerate(lines[1:_MAX_LINES + 1], 1) if line.rstrip() in _FENCES[opener]), None)
    if end is None:
        return text, ""
    block = "\n".join(lines[1:end])
    if len(block.encode("utf-8", "replace")) > MAX_BYTES or _too_deep(block):
        return text, ""  # read as text: parsing it would cost more than any page header is worth
    fields = _parse(block, toml=opener == "+++")
    if fields is None:  # a rule over some text, not a page header
        return text, ""
    rest = text.split("\n", end + 1)[end + 1] if text.count("\n") > end else ""
    title = _title(fields)
    return title + "\n" * (end + 1) + rest, title


def _too_deep(block: str) -> bool:
    """Whether ``[``/``{`` nest past ``_MAX_DEPTH`` (counted over the whole block, quotes and all: a cheap bound)."""
    depth = 0
    for char in block:
        if char in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif char in "]}" and depth:
            depth -= 1
    return False


def _parse(block: str, toml: bool) -> dict[str, Any] | None:
    try:
        if toml:
            import tomllib

            fields: Any = tomllib.loads(block)
        else:
            import yaml

            fields = yaml.safe_load(block)
    except Exception:  # YAML and TOML raise their own errors: not front matter, read as text
        return None
    return fields if isinstance(fields, dict) or (fields is None and not block.strip()) else None


def _title(fields: dict[str, Any] | None) -> str:
    def text(key: str) -> str:
        value = (fields or {}).get(key)
        return re.sub(r"\s+", " ", value).strip() if isinstance(value, str) else ""

    title = text("title") or text("name")
    about = text("description") or text("summary")
    return " - ".join(part for part in (title, about) if part)[:120]
