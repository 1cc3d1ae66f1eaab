"""HTML pages to Markdown-ish text for chunking: the page's own content, without what every page of a site
repeats around it.

A documentation site's page is mostly navigation: a sidebar listing every page, a version picker, a table of
contents, "Previous / Up / Next" bars, copy buttons. Read whole, that text becomes the page's first chunks (the
chunks that speak for the page in hybrid search's lead vote), and the same list of every page matches any
question. ``main_content`` keeps what the page itself says, by the rules browsers and screen readers use:

- a page that marks its main content (``<main>``, ``role="main"``) is read from there;
- landmarks that are not content (``<nav>``, ``role="navigation"``, banners, a page's ``<header>``, ``<footer>``
  and ``<aside>`` outside an article or the main content) and controls (buttons, pickers) are left out;
- so are the navigation blocks of generated documentation that predates those tags, named by their class or id
  (DocBook's ``navheader`` and ``toc``, gtk-doc's ``navigation``, texinfo's ``nav-panel``, Sphinx's
  ``sphinxsidebar``), and any list, table or box that is mostly links (a layout table's menu column);
- a heading's permalink mark (``#``, ``¶``) is dropped.

If that leaves less than a fifth of the page's text (a page that is mostly links, an index), the whole page is read:
nothing a user put in a file is lost because it looked like navigation. The page's ``<title>`` is its title.
"""

from __future__ import annotations

import re
from typing import Any

NOT_CONTENT_TAGS = frozenset({"nav", "button", "select", "input", "textarea", "dialog"})
# a page's header, footer and sidebar; inside an article or the main content they are its own (a note's <aside>)
PAGE_FRAME_TAGS = frozenset({"header", "footer", "aside"})
INVISIBLE_TAGS = ("script", "style", "noscript", "template", "svg", "head", "title")
NOT_CONTENT_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "menu",
                               "menubar", "toolbar"})
# class or id of a navigation block in generated documentation (whole names only: "section-header" is content)
NAVIGATION_NAMES = frozenset({"nav", "navbar", "navigation", "navheader", "navfooter", "nav-panel", "sidebar",
                              "sphinxsidebar", "toc", "table-of-contents", "breadcrumb", "breadcrumbs", "related",
                              "skip-link", "skip-to-content", "version-picker"})
MAIN_SHARE = 5  # the content kept must be a fifth of the page's text or more, else the whole page is read
LINK_BLOCKS = frozenset({"ul", "ol", "dl", "menu", "table", "td", "th", "div", "details"})
LINK_SHARE = 0.6  # a block whose text is at least this much link text, with LINK_COUNT links or more, is a menu
LINK_COUNT = 3
PERMALINK_MARKS = frozenset({"", "#", "¶", "§", "🔗", "⚓"})
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def page_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page: its ``<title>`` and its own content as Markdown-ish text."""
    import lxml.html
    from lxml import etree

    try:  # as UTF-8 bytes: lxml refuses a str whose XML declaration names another encoding
        page = lxml.html.document_fromstring(html.encode("utf-8", "replace"),
                                             parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):  # nothing but whitespace, comments or a declaration
        return "", ""
    title = " ".join(page.findtext(".//title", "").split())
    for hidden in [*page.iter(*INVISIBLE_TAGS)]:
        hidden.drop_tree()  # (its tail, the text after it, stays)
    return title, _text(main_content(page))


def main_content(page: Any) -> Any:
    """The element holding the page's own content, with what is not content inside it removed (see the module's
    docstring); the whole page's body when that would leave less than a fifth of its text."""
    body = page.find("body")
    body = page if body is None else body
    size = _Measures(body)
    main = next(iter(body.xpath(".//main | .//*[@role='main']")), None)
    root = main if main is not None and size.text(main) * MAIN_SHARE >= size.text(body) else body
    drop = _not_content(root, size)
    if (size.text(root) - sum(size.text(element) for element in drop)) * MAIN_SHARE < size.text(body):
        return body  # mostly links (an index): all of it, rather than next to nothing
    for element in drop:
        element.drop_tree()
    return root


def _words(text: str | None) -> int:
    return len(" ".join(text.split())) if text else 0


class _Measures:
    """Each element's text length and link text length (whitespace collapsed), counted once, bottom up."""

    def __init__(self, root: Any):
        self.elements = [*root.iter()]  # kept: lxml then hands out the same element objects, the dicts' keys
        self.chars: dict[Any, int] = {}
        self.link_chars: dict[Any, int] = {}
        self.links: dict[Any, int] = {}
        for element in reversed(self.elements):  # every element after all of its descendants
            own = _words(element.text) if isinstance(element.tag, str) else 0  # a comment's text is not shown
            chars = own + sum(self.chars[child] + _words(child.tail) for child in element)
            link_chars = sum(self.link_chars[child] for child in element)
            links = sum(self.links[child] for child in element)
            if element.tag == "a":
                link_chars, links = chars, links + 1
            self.chars[element], self.link_chars[element], self.links[element] = chars, link_chars, links

    def text(self, element: Any) -> int:
        return self.chars.get(element, 0)

    def is_menu(self, element: Any) -> bool:
        chars = self.chars.get(element, 0)
        return (self.links.get(element, 0) >= LINK_COUNT and chars > 0
                and self.link_chars.get(element, 0) >= LINK_SHARE * chars)


def _not_content(root: Any, size: _Measures) -> list[Any]:
    """The elements under ``root`` that are not the page's content (the outermost of each), and headings'
    permalinks."""
    drop: list[Any] = []
    stack = [(child, False) for child in reversed(root) if isinstance(child.tag, str)]
    while stack:
        element, in_heading = stack.pop()
        if _is_not_content(element, size) or (in_heading and element.tag == "a" and _is_permalink(element)):
            drop.append(element)
            continue
        in_heading = in_heading or element.tag in HEADINGS
        stack += [(child, in_heading) for child in reversed(element) if isinstance(child.tag, str)]
    return drop


def _is_not_content(element: Any, size: _Measures) -> bool:
    role = element.get("role", "").strip().lower()
    if element.tag in NOT_CONTENT_TAGS or role in NOT_CONTENT_ROLES:
        return True
    if (element.tag in PAGE_FRAME_TAGS or role == "complementary") and not any(
            ancestor.tag in ("article", "main", "section") or ancestor.get("role") == "main"
            for ancestor in element.iterancestors()):
        return True
    names = {*element.get("class", "").split(), element.get("id", "")}
    if any(name.lower() in NAVIGATION_NAMES for name in names):
        return True
    return element.tag in LINK_BLOCKS and size.is_menu(element)


def _is_permalink(link: Any) -> bool:
    return (link.get("href", "").startswith("#") and link.text_content().strip() in PERMALINK_MARKS
            and next(link.iter("img"), None) is None)


def _text(root: Any) -> str:
    """``root``'s content as Markdown-ish text (``_TextWriter``), walked in document order."""
    writer = _TextWriter()
    stack: list[tuple[Any, bool]] = [(root, True)]
    while stack:
        element, entering = stack.pop()
        if not entering:
            writer.end(element.tag)
            if element is not root and element.tail:
                writer.data(element.tail)
        elif not isinstance(element.tag, str):  # a comment or processing instruction: only its tail is text
            if element.tail:
                writer.data(element.tail)
        else:
            writer.start(element.tag)
            if element.text:
                writer.data(element.text)
            stack.append((element, False))
            stack += [(child, True) for child in reversed(element)]
    return writer.text()


class _TextWriter:
    """HTML to Markdown-ish text, from the page's start tags, end tags and text in order: headings become #, blocks
    become paragraphs, ``<pre>`` a fenced code block kept line by line, a definition term (``<dt>``) heads its
    definition's first paragraph (one block, so one chunk), a list item's first paragraph stays on its bullet,
    table cells are separated."""

    BLOCK = frozenset({"p", "div", "section", "article", "li", "tr", "br", "table", "ul", "ol", "blockquote",
                       "header", "footer", "main", "nav", "dl", "dt", "figure", "caption"})

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pre = 0  # <pre> depth: its text is kept as written, in ``code`` until it ends
        self.code: list[str] = []
        self.blocks: list[str] = []  # the finished <pre> texts; ``out`` holds a placeholder for each
        self.after_term = False  # a <dt> just ended: its <dd> starts on the next line of the same block
        self.joining = False  # in that <dd>, before its first words
        self.bullet = False  # a list item's bullet was written, its first words not yet

    def start(self, tag: str) -> None:
        if self.pre:
            if tag == "code" and self.code and not self.code[-1].endswith("\n"):
                self.code.append("\n")  # a second version of the example (Node's ESM and CommonJS tabs)
            return
        if tag == "pre":
            self.pre = 1
        elif tag in HEADINGS:
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "dd":
            self.joining = self.after_term
            self.out.append("\n" if self.after_term else "\n\n")
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag == "tr":  # a table's rows stay one block
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
            self.bullet = True
        elif tag in self.BLOCK and not self.joining and not self.bullet:
            self.out.append("\n\n")
        self.after_term = False

    def end(self, tag: str) -> None:
        if tag == "pre" and self.pre:
            self.end_pre()
        elif self.pre:
            return
        elif tag == "dt":
            self.after_term = True
        elif tag in HEADINGS or tag == "dd" or (tag in self.BLOCK and tag != "tr"):
            self.out.append("\n\n")
            self.bullet = False

    def end_pre(self) -> None:
        self.pre = 0
        self.blocks.append("".join(self.code).strip("\n"))
        self.code = []
        self.out.append(f"\n\n\x00{len(self.blocks) - 1}\x00\n\n")

    def data(self, data: str) -> None:
        data = data.replace("\x00", "")  # the placeholders use it
        if self.pre:  # kept as it is: its lines and indentation are what it says
            self.code.append(data)
            return
        # collapse runs of whitespace, but keep the space around an inline tag's text
        words = " ".join(data.split())
        if words:
            words = (" " if data[0].isspace() else "") + words + (" " if data[-1].isspace() else "")
            self.after_term = self.joining = self.bullet = False
        self.out.append(words or " ")

    def text(self) -> str:
        if self.pre:  # a <pre> never closed ends with the page
            self.end_pre()
        lines = [re.sub(r" {2,}", " ", line).strip() for line in "".join(self.out).splitlines()]
        lines = ["" if set(line) <= {"|", " "} else line for line in lines]  # a layout table's empty cells
        text = "\n".join(lines)
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        text = re.sub(r"\x00(\d+)\x00", lambda m: "```\n" + self.blocks[int(m.group(1))] + "\n```", text)
        return text.strip() + "\n"
