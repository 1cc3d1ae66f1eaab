"""HTML pages as documentation sites ship them: the page's own content is read, and the navigation every page
repeats (sidebars, tables of contents, previous/next bars, copy buttons, heading permalinks) is left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import rag
from halguru.rag.chunking import chunk_text
from halguru.rag.html import page_text
from halguru.rag.loaders import Document, load

SIDEBAR = "".join(f"<li><a href='{name}.html'>{name.title()}</a></li>" for name in
                  ("buffer", "crypto", "events", "fs", "http", "net", "os", "path", "stream", "tty", "zlib"))

MODERN_PAGE = f"""<!DOCTYPE html><html><head><title>TTY | Toolkit v2 Documentation</title>
<style>h2 {{ color: red }}</style></head><body>
<a href="#apicontent" class="skip-to-content">Skip to content</a>
<div role="navigation" id="column2"><ul>{SIDEBAR}</ul></div>
<div id="column1"><header><h1>Toolkit v2 documentation</h1>
<select><option>v2</option><option>v1</option></select></header>
<details role="navigation" id="toc"><summary>Table of contents</summary><ul>
<li><a href="#tty">TTY</a></li><li><a href="#raw">setRawMode</a></li><li><a href="#cols">columns</a></li></ul></details>
<div role="main" id="apicontent">
<h2>TTY<span><a class="mark" href="#tty">#</a></span></h2>
<p>The tty module gives the readable and writable sides of a terminal.</p>
<pre><code class="mjs">import tty from 'tty';</code><code class="cjs">const tty = require('tty');</code>
<button class="copy-button">copy</button></pre>
<h3 id="raw">readStream.setRawMode(mode)<a class="headerlink" href="#raw">¶</a></h3>
<ul><li><p>Characters arrive one by one, without waiting for the Enter key.</p></li></ul>
<aside class="note"><p>Raw mode needs a terminal on standard input.</p></aside>
</div></div>
<aside><p>Sponsored by Example Corp</p></aside>
<footer><a href="a.html">About</a> <a href="b.html">Privacy</a> <a href="c.html">Terms</a></footer>
</body></html>"""

# Generated documentation from before landmark tags: a layout table whose first column is a menu, a navigation
# bar and a table of contents named by their class.
OLD_PAGE = f"""<html><head><title>The converter tool</title></head><body>
<table class="nav"><tr><td><a href="prev.html"><img src="left.png"></a></td><td>User Manual</td>
<td><a href="next.html"><img src="right.png"></a></td></tr></table>
<table width="100%"><tr>
<td width="200"><h3>Main Menu</h3><ul>{SIDEBAR}</ul></td><td></td>
<td><h1>The converter tool</h1><div class="toc"><p><a href="#a">1. Usage</a></p><p><a href="#b">2. Options</a></p></div>
<h2>1. Usage</h2><p>The converter reads a stylesheet and applies it to every input file named after it.</p>
<h2>2. Options</h2><p>Pass a parameter to the stylesheet with a name and a value.</p></td>
</tr></table></body></html>"""


def test_a_modern_page_is_read_from_its_main_content_without_navigation_or_controls() -> None:
    title, text = page_text(MODERN_PAGE)
    assert title == "TTY | Toolkit v2 Documentation"
    assert text.startswith("## TTY\n\nThe tty module gives")  # no skip link, sidebar, banner or contents
    for navigation in ("Skip to content", "Zlib", "Table of contents", "v1", "copy", "Privacy", "#\n", "¶",
                       "Sponsored"):
        assert navigation not in text
    # both versions of the example, one per line; a heading without its permalink; a bullet with its words
    assert "```\nimport tty from 'tty';\nconst tty = require('tty');\n```" in text
    assert "### readStream.setRawMode(mode)\n" in text
    assert "- Characters arrive one by one" in text
    assert "Raw mode needs a terminal" in text  # a note's <aside> inside the content is content


def test_a_page_without_landmarks_loses_its_menu_column_navigation_bar_and_contents() -> None:
    title, text = page_text(OLD_PAGE)
    assert title == "The converter tool"
    assert text == ("# The converter tool\n\n## 1. Usage\n\nThe converter reads a stylesheet and applies it to every "
                    "input file named after it.\n\n## 2. Options\n\nPass a parameter to the stylesheet with a name "
                    "and a value.\n")


def test_a_page_that_is_only_links_is_kept_whole() -> None:
    bookmarks = f"<html><head><title>Bookmarks</title></head><body><h1>Bookmarks</h1><ul>{SIDEBAR}</ul></body></html>"
    title, text = page_text(bookmarks)
    assert title == "Bookmarks" and "- Zlib" in text and "- Buffer" in text


def test_a_folder_of_pages_cites_content_and_leads_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "tty.html").write_text(MODERN_PAGE)
    (folder / "converter.html").write_text(OLD_PAGE)
    document = load(folder / "tty.html", (folder / "tty.html").read_bytes())
    assert isinstance(document, Document) and document.title == "TTY | Toolkit v2 Documentation"
    first = chunk_text(document.text, document.kind, 256, 0)[0]
    assert first.heading == "TTY" and "Zlib" not in first.text  # the page's lead is what it is about
    rag.create("site", "fast", chunk_size=40, chunk_overlap=0)
    assert rag.ingest("site", [folder]).chunks >= 3
    hit = rag.search("site", "read keys one at a time without Enter", k=1, mode="fts")[0]
    assert hit.citation == "site/tty.html#readStream.setRawMode(mode)"
    hit = rag.search("site", "give the stylesheet a parameter value", k=1, mode="fts")[0]
    assert hit.citation == "site/converter.html#2. Options"

    def parse(*_: object) -> None:
        raise AssertionError("an unchanged page was parsed again")

    monkeypatch.setattr("halguru.rag.indexer.load", parse)
    assert sorted(rag.ingest("site", [folder]).unchanged) == ["site/converter.html", "site/tty.html"]
