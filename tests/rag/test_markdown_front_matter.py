"""Markdown as documentation sites write it: a page's front matter names it (not its first section's heading, the
same on every page of npm's docs), and a Markdown manual page is titled by its NAME line."""

from __future__ import annotations

from pathlib import Path

from halguru import rag
from halguru.rag.front_matter import split_front_matter
from halguru.rag.query import Hit

NPM_CI = """\
---
title: npm-ci
section: 1
description: Clean install a project
---

### Synopsis

```bash
npm ci
```

### Description

Meant for automated environments such as test platforms and deployment.
"""

BUILDAH = """\
# buildah-rename "1" "July 2018" "buildah"

## NAME
buildah\\-rename - Rename a local container.

## SYNOPSIS
**buildah rename** *container* *new-name*
"""

HUGO = """\
+++
title = "Garbage collection"
summary = "Freeing the disk space of deleted image layers"
+++

## Synopsis

Run it while the registry is read-only.
"""

RULE_FIRST = """\
---
Some text under a rule, then another rule.
---

# Real title

Body.
"""

CODE_FIRST = """\
```bash
# install the dependencies first
make deps
```

# Building

Run make.
"""


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in {"npm-ci.md": NPM_CI, "buildah-rename.1.md": BUILDAH, "gc.md": HUGO,
                       "rule.md": RULE_FIRST, "build.md": CODE_FIRST}.items():
        (folder / name).write_text(text)
    return folder


def _labels(hits: list[Hit]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for hit in hits:
        found.setdefault(hit.source.rsplit("/", 1)[-1], []).append(hit.text)
    return found


def test_front_matter_titles_the_page_and_is_no_chunk(tmp_path):
    rag.create("site", embedder="fast")
    rag.ingest("site", [_folder(tmp_path)])
    hits = rag.search("site", "clean install", k=50, mode="fts")
    by_page = _labels(hits)
    assert "npm-ci.md" in by_page  # found by its description, which only its front matter says
    everything = rag.search("site", "synopsis rename registry building rule", k=50, mode="fts")
    texts = [h.text for h in everything]
    assert not any("title:" in t or "description:" in t or "title =" in t for t in texts)
    table = rag.open_base("site").table.to_arrow().to_pylist()
    labels = {row["source"].rsplit("/", 1)[-1]: row["search_text"].split("\n", 1)[0] for row in table
              if row["chunk_index"] == 0}
    assert labels["npm-ci.md"] == "docs/npm-ci.md | npm-ci - Clean install a project"
    assert labels["gc.md"].startswith("docs/gc.md | Garbage collection - Freeing the disk space of deleted image")
    assert "buildah-rename - Rename a local container." in labels["buildah-rename.1.md"]
    assert labels["rule.md"].startswith("docs/rule.md | Real title")  # a rule over text is not front matter
    assert "Some text under a rule" in " ".join(texts)
    assert labels["build.md"].startswith("docs/build.md | Building")  # a shell comment is no title
    # The page's lead (its first chunk, which votes for it) says what it is; citations keep the file's line numbers.
    first = next(row for row in table if row["source"].endswith("npm-ci.md") and row["chunk_index"] == 0)
    assert (first["text"], first["line_start"], first["line_end"]) == ("npm-ci - Clean install a project", 1, 1)
    second = next(row for row in table if row["source"].endswith("npm-ci.md") and row["chunk_index"] == 1)
    assert second["line_start"] == 7 and second["text"].startswith("### Synopsis")


def test_a_hostile_front_matter_block_is_read_as_text_at_once():
    """A web-chat attachment or an ingested file whose front matter was 1 MB of one YAML flow sequence (23 s of
    the YAML parser) or 2,000 nested brackets (2 s in 8 KB): a block over a few KB, or nested that deep, is no
    page header; it is read as text, unparsed."""
    import time

    for block in ("a: [" + "1," * 495_000 + "1]", "a: " + "[" * 2000, "title: " + "{" * 1000 + "x"):
        text = f"---\n{block}\n---\nhello\n"
        started = time.perf_counter()
        assert split_front_matter(text) == (text, "")
        assert time.perf_counter() - started < 0.2
    long_but_fine = "---\ntitle: Page\ndescription: " + "word " * 700 + "\n---\nhello\n"  # ~3.5 KB: still a header
    assert split_front_matter(long_but_fine)[1].startswith("Page - word word")
