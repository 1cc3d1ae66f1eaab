"""Structure beyond Markdown (man pages, RFC-style numbering, code), HTML inline spacing, and hybrid search
whose first results do not depend on how many were asked for."""

from __future__ import annotations

import pydoc
import warnings
from pathlib import Path

from halguru import rag
from halguru.rag.chunking import chunk_text, document_title
from halguru.rag.html import page_text
from halguru.rag.loaders import Document, load

MAN_PAGE = """\
GREP(1)                      User Commands                      GREP(1)

NAME
       grep - print lines that match patterns

SYNOPSIS
       grep [OPTION...] PATTERNS [FILE...]

OPTIONS
   Generic Program Information
       --help Output a usage message and exit.

       -r, --recursive
              Read all files under each directory, recursively, following
              symbolic links only if they are on the command line.

              Note that if no file operand is given, grep searches the
              working directory.

       -C NUM, --context=NUM
              Print NUM lines of output context.

EXIT STATUS
       Normally the exit status is 0 if a line is selected.
"""


def _text_of(html: str) -> str:
    return page_text(html)[1]


def test_html_keeps_the_spaces_around_inline_tags():
    text = _text_of("<p>Where is my <b>parcel</b>? It <i>shipped</i> <a href='/t'>yesterday</a>.</p>")
    assert text == "Where is my parcel? It shipped yesterday.\n"
    assert _text_of("<p>a<b>b</b>c</p>") == "abc\n"  # no space invented inside a word


def test_html_code_stays_code_a_term_stays_with_its_definition_and_a_table_is_one_block():
    page = ("<h2>Options</h2><dl><dt><code>-r</code>, <code>--recursive</code></dt>"
            "<dd><p>Copy directories recursively.</p><p>Symbolic links are not followed.</p></dd></dl>"
            "<p>For example:</p><pre><span class='k'>if</span> (rc == 0)\n    copy(&amp;src,  dest);\n</pre>"
            "<table><tr><th>user</th><th>uid</th></tr><tr><td>root</td><td>0</td></tr></table>")
    text = _text_of(page)
    assert "-r, --recursive\nCopy directories recursively.\n\nSymbolic links" in text
    assert "```\nif (rc == 0)\n    copy(&src,  dest);\n```" in text  # lines and spaces as written
    assert "| user | uid\n| root | 0" in text
    assert _text_of("<p>Run:</p><pre>make\n  install") == "Run:\n\n```\nmake\n  install\n```\n"  # never closed
    chunks = chunk_text(text, "markdown", size=32, overlap=0)
    term = next(c for c in chunks if "Copy directories" in c.text)
    assert "--recursive" in term.text and term.heading == "Options"
    code = next(c for c in chunks if "copy(&src" in c.text)
    assert "```\nif (rc == 0)\n    copy(&src,  dest);\n```" in code.text  # the code block whole, not split


def test_man_page_sections_and_an_option_kept_with_its_explanation():
    chunks = chunk_text(MAN_PAGE, "text", size=64, overlap=0)
    recursive = [c for c in chunks if "-r, --recursive" in c.text]
    assert len(recursive) == 1
    chunk = recursive[0]
    # The term, its explanation and its second paragraph are one chunk, named by the term under its section.
    assert "Read all files under each directory" in chunk.text and "working directory" in chunk.text
    assert chunk.heading == "OPTIONS > Generic Program Information > -r, --recursive"
    term_line = MAN_PAGE.splitlines().index("       -r, --recursive") + 1
    assert chunk.line_start <= term_line < term_line + 5 <= chunk.line_end  # the citation's line range holds it
    exit_status = next(c for c in chunks if "exit status is 0" in c.text)
    assert exit_status.heading == "EXIT STATUS"
    assert document_title(MAN_PAGE) == "grep - print lines that match patterns"


def test_numbered_sections_nest_and_code_is_named_by_class_and_function():
    rfc = ("1. Introduction\n\nThis memo defines a protocol.\n\n2. Framing\n\nFrames have a header.\n\n"
           "2.1. Header Layout\n\nThe header is four octets long.\n")
    headings = {c.text.splitlines()[-1]: c.heading for c in chunk_text(rfc, "text", size=20, overlap=0)}
    assert headings["The header is four octets long."] == "2. Framing > 2.1. Header Layout"
    assert headings["This memo defines a protocol."] == "1. Introduction"
    code = ('"""Parcels."""\n\n\nclass Tracker:\n    """Tracks parcels."""\n\n    def locate(self, number):\n'
            '        return self.db[number]\n\n\ndef main():\n    pass\n')
    named = {c.text.splitlines()[0].strip(): c.heading for c in chunk_text(code, "code", size=16, overlap=0)}
    assert named["def locate(self, number):"] == "Tracker > locate"
    assert named["def main():"] == "main"
    assert document_title(code, "code") == "Parcels."


RFC_PAGES = """\
Network Working Group                                        R. Fielding
Request for Comments: 2616                                     UC Irvine
Category: Standards Track                                      June 1999


                Hypertext Transfer Protocol -- HTTP/1.1

Status of this Memo

   This document specifies an Internet standards track protocol for the
   Internet community, and requests discussion and suggestions.

3. Protocol Parameters

3.2.1 General Syntax

   URIs in HTTP can be represented in absolute form or relative to some
   known base URI. The two forms are differentiated by the fact that



Fielding, et al.            Standards Track                    [Page 19]
\f
RFC 2616                        HTTP/1.1                       June 1999


   absolute URIs always begin with a scheme name followed by a colon.

3.2.2 http URL

   The "http" scheme is used to locate network resources via the HTTP
   protocol.

Appendix A.  Collected ABNF

   The rules of this appendix are collected from the sections above.
"""


def test_an_rfc_s_pages_and_sections_mixed_case_titles_and_centred_title():
    """Page furniture is left out and a paragraph broken by a page is one again; lower-case numbered titles,
    appendices and mixed-case titles over an indented body are sections; the centred line is the title."""
    chunks = chunk_text(RFC_PAGES, "text", size=256, overlap=0)
    assert not any("[Page" in c.text or "RFC 2616    " in c.text or "\f" in c.text for c in chunks)
    syntax = next(c for c in chunks if "absolute form" in c.text)
    assert syntax.heading == "3. Protocol Parameters > 3.2.1 General Syntax"
    assert "the fact that\n\n" in syntax.text and "absolute URIs always begin" in syntax.text
    assert (syntax.line_start, syntax.line_end) == (15, 27)  # the file's own line numbers
    assert next(c for c in chunks if '"http" scheme' in c.text).heading == "3. Protocol Parameters > 3.2.2 http URL"
    assert next(c for c in chunks if "standards track protocol" in c.text).heading == "Status of this Memo"
    assert next(c for c in chunks if "collected from" in c.text).heading == "Appendix A.  Collected ABNF"
    assert document_title(RFC_PAGES, "text") == "Hypertext Transfer Protocol -- HTTP/1.1"
    # a line at the margin leading into an indented example is no title; a sentence centred is no title
    example = "The general synopsis of the command line is\n\n     grep OPTIONS PATTERN INPUT-FILES\n"
    assert [c.heading for c in chunk_text(example, "text")] == [""]
    assert document_title("          see the options below.\n\nBody.\n", "text") == ""


INFO_NODE = """\
3.2 ‘tac’: Concatenate and write files in reverse
==================================================

‘tac’ copies each FILE to standard output, reversing the records.

3.2.1 Separators
----------------

Records are separated by instances of a string.

‘-s SEPARATOR’
     Use SEPARATOR as the record separator.

--------------------------
     A rule is no term.
"""


def test_underlined_titles_of_any_case_are_sections_and_a_rule_is_no_term():
    chunks = chunk_text(INFO_NODE, "text", size=40, overlap=0)
    top = next(c for c in chunks if "copies each FILE" in c.text)
    assert top.heading == "3.2 ‘tac’: Concatenate and write files in reverse"
    assert top.line_start == 1  # the title opens the section's first chunk; its underline is left out of the text
    assert top.text.startswith("3.2 ‘tac’: Concatenate and write files in reverse\n\n") and "===" not in top.text
    nested = next(c for c in chunks if "Records are separated" in c.text)
    assert nested.heading.startswith("3.2 ‘tac’: Concatenate and write files in reverse > 3.2.1 Separators")
    assert all("----" not in c.heading and "====" not in c.heading for c in chunks)
    rule = next(c for c in chunks if "A rule is no term." in c.text)
    assert rule.heading.endswith("3.2.1 Separators")  # not "... > --------------------------"
    # Without a section number the mark gives the level: "=" sections hold "-" subsections.
    rst = "Install\n=======\n\nRun the installer.\n\nfrom source\n-----------\n\nBuild it first.\n"
    headings = {c.text.splitlines()[-1]: c.heading for c in chunk_text(rst, "text", size=16, overlap=0)}
    assert headings["Build it first."] == "Install > from source"
    assert headings["Run the installer."] == "Install"
    # A line of dashes under a longer sentence is a rule, not an underline.
    assert chunk_text("Some words here that run on\n---\n\nBody.\n", "text")[0].heading == ""
    # Markdown's setext headings: one line over "===" (level 1) or "---" (level 2); under a longer paragraph
    # "---" is a rule.
    markdown = ("Guide\n=====\n\nIntro text.\n\nInstall\n-------\n\nRun pipx install halguru.\n\n"
                "Two lines of a\nparagraph.\n---\n\nAfter the rule.\n")
    chunks = chunk_text(markdown, "markdown", size=16, overlap=0)
    assert [(c.heading, c.line_start) for c in chunks[:2]] == [("Guide", 1), ("Guide > Install", 6)]
    assert chunks[1].text.startswith("Install\n\nRun pipx") and "-------" not in chunks[1].text  # no underline
    assert chunks[-1].heading == "Guide > Install" and "After the rule." in chunks[-1].text


RST_PAGE = """\
.. _auth:

=======================
 Authentication System
=======================

The server checks each client's user name and password.

Activating Authentication
=========================

Pass an authenticator to the server.
"""


def test_a_restructuredtext_page_title_between_two_rules_heads_the_page(tmp_path):
    """Sphinx's and Python's pages put their title between two rules: it heads every section of the page, its
    rules and the page's ``.. _auth:`` label are in no chunk's text (the label was the page's first chunk)."""
    page = tmp_path / "auth.rst"
    page.write_text(RST_PAGE)
    document = load(page, page.read_bytes())
    assert isinstance(document, Document)
    chunks = chunk_text(document.text, document.kind, size=16, overlap=0)
    assert [(c.heading, c.line_start) for c in chunks] == [
        ("Authentication System", 3), ("Authentication System > Activating Authentication", 9)]
    assert chunks[0].text == "Authentication System\n\nThe server checks each client's user name and password."
    assert not any("====" in c.text or ".. _auth" in c.text for c in chunks)


def test_a_numbered_list_item_is_no_section_title():
    """A wiki export's list and table of contents (`` 1. SQL``, indented by one) stay items of their section:
    their number took the page's title out of the heading of every section after them."""
    page = ("SQL\n===\n\nContents\n\n 1. SQL\n\n     1. Dovecot configuration\n\n"
            "Dovecot configuration\n---------------------\n\nSet the driver.\n\n"
            "Master users log in in two ways:\n\n 1. Give the login username in the SASL\n"
            "    authorization ID field.\n\nMaster passwords\n----------------\n\nA password for all.\n")
    chunks = chunk_text(page, "text", size=16, overlap=0)
    assert next(c for c in chunks if "Set the driver." in c.text).heading == "SQL > Dovecot configuration"
    assert next(c for c in chunks if "A password for all." in c.text).heading == "SQL > Master passwords"
    assert all(c.heading.startswith("SQL") for c in chunks)  # not "1. SQL > ...", "1. Give the login ... > ..."


def test_a_line_of_code_opening_a_block_is_no_entry_term():
    """Configuration and code in a text page (``passdb {`` over its indented settings) stay in their section:
    they were taken for a definition-list term, which named the chunk and its citation (``ACL.txt#plugin {``)."""
    page = ("Access Control Lists\n====================\n\nEnable the plugin:\n\nplugin {\n  acl = vfile\n}\n\n"
            "my %handler = (\n    lookup => sub { 1 },\n);\n\n-r, --recursive\n    Read all folders.\n")
    chunks = chunk_text(page, "text", size=16, overlap=0)
    assert next(c for c in chunks if "acl = vfile" in c.text).heading == "Access Control Lists"
    assert next(c for c in chunks if "lookup =>" in c.text).heading == "Access Control Lists"
    assert next(c for c in chunks if "Read all" in c.text).heading == "Access Control Lists > -r, --recursive"



def test_a_wrapped_list_item_is_no_entry_term():
    """A list item whose text wraps under itself (`` * 'host=s': The destination server's hostname...``, a wiki
    export's, or a man page's bullet) is a sentence of its section: it was taken for a definition-list term, so
    the chunk and its citation were named by the item cut at 60 characters (``Host.txt#1. Tell the client to log
    into another server without allowi``, 220 of the 1,734 chunks of Dovecot's wiki pages)."""
    page = ("Login referrals\n===============\n\nRedirect clients to another server.\n\n"
            "Configuration\n-------------\n\nLogin referrals can be used in two ways:\n\n"
            " 1. Tell the client to log into another server without allowing to log in\n    locally.\n"
            " 2. Suggest the client to log into another server, but log it in anyway.\n\n"
            " * 'host=s': The destination server's hostname. This field is required for\n"
            "   login referrals to be used.\n * 'port=s': The destination server's port.\n\n"
            " * auto: Autocreate/subscribe mailbox?\n    * no: Neither\n    * create: Autocreate it\n")
    chunks = chunk_text(page, "text", size=40, overlap=0)
    assert {c.heading for c in chunks if "host=s" in c.text or "log in\n" in c.text or "auto:" in c.text} == {
        "Login referrals > Configuration"}
    man = ("NOTES\n       Two cases:\n\n       \u2022   A file that is a link is followed when it is named\n"
           "           on the command line.\n\n       -L     Follow every link.\n")
    headings = {c.heading for c in chunk_text(man, "text", size=16, overlap=0)}
    assert headings == {"NOTES", "NOTES > -L"}
    # a term whose explanation is deeper than its words is still an entry (expr's ``+ TOKEN``, bash's ``*``)
    for term, text in (("+ TOKEN", "       + TOKEN\n              interpret TOKEN as a string\n"),
                       ("*", "       *      Matches any string, including\n              the null string.\n")):
        assert [c.heading for c in chunk_text("OPTIONS\n" + text, "text")] == [f"OPTIONS > {term}"]


def test_code_between_scissors_fences_is_no_title_and_no_term():
    """Dovecot's wiki pages (MoinMoin's text export) put code between ``---%<---`` lines: in it an IMAP session's
    ``2 SETACL Work user@domain +s`` was a numbered section title that replaced the page's title in every later
    section (``3 GETACL Work > Troubleshooting``), SQL's ``LOOP`` an upper-case one, ``password_query = \\`` a
    term naming the chunk."""
    fence = "---%<" + "-" * 40
    page = (f"Mailbox sharing\n===============\n\nIMAP ACL examples\n-----------------\n\n{fence}\n"
            f"1 LOGIN user pass\n\n2 SETACL Work user@domain +s\n2 OK Setacl complete.\n\nLOOP\n"
            f"  UPDATE quota SET bytes = 1;\n\npassword_query = \\\n  SELECT password FROM users\n{fence}\n\n"
            "Troubleshooting\n---------------\n\nCheck the log.\n")
    chunks = chunk_text(page, "text", size=16, overlap=0)
    assert {c.heading for c in chunks if "SETACL" in c.text or "UPDATE" in c.text or "SELECT" in c.text} == {
        "Mailbox sharing > IMAP ACL examples"}
    assert next(c for c in chunks if "Check the log." in c.text).heading == "Mailbox sharing > Troubleshooting"

def _pydoc_corpus(folder: Path) -> Path:
    warnings.simplefilter("ignore")
    folder.mkdir()
    for module in ("json", "csv", "shutil", "textwrap", "difflib", "heapq", "bisect", "base64", "fnmatch",
                   "glob", "tempfile", "gzip", "zipfile", "calendar", "statistics", "random", "string"):
        (folder / f"{module}.txt").write_text(pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext)))
    return folder


def test_hybrid_top_5_is_the_same_for_k_5_and_k_50(tmp_path):
    rag.create("std")
    summary = rag.ingest("std", [_pydoc_corpus(tmp_path / "std")])
    assert summary.chunks > 100  # more chunks than the candidate pool, so k could matter
    for question in ("copy a whole folder with everything inside", "reflow a paragraph to a given width",
                     "what changed between two texts", "the smallest item of a growing collection",
                     "turn binary data into printable characters", "the day of the week of a date"):
        five = rag.search("std", question, k=5)
        fifty = rag.search("std", question, k=50)
        assert len(five) == 5 and len(fifty) == 50
        assert [(h.source, h.lines) for h in five] == [(h.source, h.lines) for h in fifty[:5]], question
        assert len({h.source for h in five}) == 5  # five pages first; a page's other chunks come after
    # A paraphrased question finds its page first, and the citation names the section it came from.
    best = rag.search("std", "copy a whole folder with everything inside", k=5)
    assert any(h.source == "std/shutil.txt" for h in best[:3])
    assert best[0].heading


def test_kb_create_help_names_the_real_default_embedder():
    from typer.testing import CliRunner

    from halguru.cli.app import app
    from halguru.rag.embedders import DEFAULT_EMBEDDER

    out = CliRunner().invoke(app, ["kb", "create", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert f"{DEFAULT_EMBEDDER} (the default" in " ".join(out.output.split())


def test_citations_number_passages_and_the_footer_lists_only_what_the_answer_cites():
    from halguru.rag.agent import Citations, context_block
    from halguru.rag.query import Hit

    install = Hit("docs/guide.md", "Guide > Install", "3-8", 0.9, "Run pipx install halguru.")
    configure = Hit("docs/guide.md", "Guide > Configure", "10-14", 0.8, "Set HALGURU_HOME.")
    refunds = Hit("docs/faq.txt", "", "1-3", 0.7, "Refunds take 14 days.")
    citations = Citations()
    block = context_block([install, configure, refunds], citations)
    assert block.startswith("[1] docs/guide.md#Install, lines 3-8\nRun pipx install halguru.")
    assert "[2] docs/guide.md#Configure, lines 10-14\n" in block  # same file, another passage: its own number
    assert citations.footer("Install it with pipx [1]; refunds take two weeks [3].") == (
        "\n\nSources:\n[1] docs/guide.md#Install, lines 3-8\n[3] docs/faq.txt, lines 1-3")
    assert citations.footer("I could not find that in the documents.") == ""  # no list of all it was given
