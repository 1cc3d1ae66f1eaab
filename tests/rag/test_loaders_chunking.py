"""Loaders read every supported type (a real PDF included) and chunking keeps structure and line ranges."""

from __future__ import annotations

from pathlib import Path

from halguru.rag import loaders
from halguru.rag.chunking import chunk_text, count_tokens
from halguru.rag.loaders import Document, Skip, load, read_bytes


def write_pdf(path: Path, lines: list[str] | None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    if lines is None:
        pdf.rect(20, 20, 50, 50)  # a drawing, no text: what a scanned page looks like to a text extractor
    for line in lines or []:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def loaded(path: Path) -> Document | Skip:
    data = read_bytes(path)
    return data if isinstance(data, Skip) else load(path, data)


def test_markdown_headings_paragraphs_and_line_ranges():
    text = "# Guide\n\nIntro line.\n\n## Install\n\nRun pip install halguru.\n\n## Usage\n\nCall halguru run.\n"
    chunks = chunk_text(text, "markdown", size=64, overlap=8)
    assert [c.heading for c in chunks] == ["Guide", "Guide > Install", "Guide > Usage"]
    install = chunks[1]
    assert "pip install" in install.text and (install.line_start, install.line_end) == (5, 7)
    lines = text.split("\n")
    assert "pip install" in "\n".join(lines[install.line_start - 1:install.line_end])


def test_code_block_kept_whole_when_it_fits_and_split_with_overlap_when_not():
    code = "```python\n" + "\n".join(f"x{i} = {i}  # line {i}" for i in range(12)) + "\n```"
    text = f"# Code\n\nBefore the block, a paragraph of words.\n\n{code}\n\nAfter the block.\n"
    chunks = chunk_text(text, "markdown", size=120, overlap=10)
    assert any(code in c.text for c in chunks)  # the fenced block is in one chunk, whole
    long_text = "\n".join(f"word{i} " * 10 for i in range(40))
    parts = chunk_text(long_text, "text", size=64, overlap=16)
    assert len(parts) > 5
    assert all(count_tokens(p.text) <= 64 for p in parts)
    assert parts[1].line_start <= parts[0].line_end  # overlap: the next chunk repeats the end of the previous


def test_html_drops_scripts_and_styles_and_keeps_headings(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><style>body{color:red}</style><script>alert('x')</script></head><body>"
                    "<h1>Pricing</h1><p>Plans start at 5 EUR.</p><script>track()</script></body></html>")
    doc = loaded(page)
    assert isinstance(doc, Document)
    assert "# Pricing" in doc.text and "5 EUR" in doc.text
    assert "alert" not in doc.text and "color:red" not in doc.text and "track" not in doc.text


def test_pdf_text_layer_and_pdf_without_one(tmp_path):
    doc = loaded(write_pdf(tmp_path / "report.pdf", ["Quarterly report", "Revenue grew by 12 percent."]))
    assert isinstance(doc, Document) and "Revenue grew by 12 percent" in doc.text
    assert chunk_text(doc.text)[0].heading == "page 1"
    scanned = loaded(write_pdf(tmp_path / "scan.pdf", None))
    assert isinstance(scanned, Skip) and "no text layer" in scanned.reason


def test_a_pdf_s_running_header_and_page_numbers_are_left_out(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    bodies = [["Setting up the router", "Plug the router into power."], ["Note", "Hold reset for 10 seconds."],
              ["Note", "The admin password is printed under the router."], ["Firmware updates run at night."]]
    for number, body in enumerate(bodies, 1):
        pdf.add_page()
        for line in ["ACME R7 Router - User Guide", *body, f"Page {number} of 4"]:
            pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "guide.pdf"))
    doc = loaded(tmp_path / "guide.pdf")
    assert isinstance(doc, Document)
    assert "User Guide" not in doc.text and "of 4" not in doc.text
    for body in bodies:  # a line on two pages of four ("Note") is content, not a running head
        assert all(line in doc.text for line in body)
    assert [c.heading for c in chunk_text(doc.text)] == ["page 1", "page 2", "page 3", "page 4"]


def test_bad_files_are_skipped_with_a_reason(tmp_path, monkeypatch):
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary" * 10)
    (tmp_path / "big.txt").write_text("x" * 5000)
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    monkeypatch.setattr(loaders, "MAX_BYTES", 4000)
    reasons = {p.name: r.reason for p in tmp_path.iterdir() if isinstance(r := loaded(p), Skip)}
    assert reasons["empty.md"] == "empty file"
    assert reasons["blob.txt"] == "binary file"
    assert reasons["big.txt"].startswith("too large")
    files, skipped = loaders.discover([tmp_path])
    assert "image.png" not in {f.name for f in files}
    assert any("unsupported file type .png" in s.reason for s in skipped)


def test_gzipped_files_are_read_by_the_name_inside_and_a_bad_or_huge_one_is_skipped(tmp_path, monkeypatch):
    import gzip

    (tmp_path / "NEWS.gz").write_bytes(gzip.compress(b"Version 2.1\n\nThe pager now remembers the last search.\n"))
    (tmp_path / "guide.md.gz").write_bytes(gzip.compress(b"# Guide\n\n## Install\n\nRun make install as root.\n"))
    (tmp_path / "page.html.gz").write_bytes(gzip.compress(b"<h1>Page</h1><script>x()</script><p>Body text.</p>"))
    packed = gzip.compress(" ".join(f"word{i * 7919 % 1000}" for i in range(500)).encode())
    (tmp_path / "cut.txt.gz").write_bytes(packed[:len(packed) // 2])  # a download that stopped half-way
    (tmp_path / "fake.gz").write_bytes(b"plain text, not gzip")
    (tmp_path / "bomb.txt.gz").write_bytes(gzip.compress(b"a" * 5000))  # 5000 bytes unpacked, ~30 packed
    (tmp_path / "README.Debian.gz").write_bytes(gzip.compress(b"Debian notes: the package keeps its config in /etc."))
    (tmp_path / "data.Debian.gz").write_bytes(gzip.compress(b"x"))
    (tmp_path / "twice.txt.gz.gz").write_bytes(gzip.compress(gzip.compress(b"x")))
    monkeypatch.setattr(loaders, "MAX_BYTES", 4000)

    files, skipped = loaders.discover([tmp_path])
    assert {f.name for f in files} == {"NEWS.gz", "guide.md.gz", "page.html.gz", "cut.txt.gz", "fake.gz",
                                       "bomb.txt.gz", "README.Debian.gz"}
    why = {s.path.name: s.reason for s in skipped}
    assert why == {"data.Debian.gz": "unsupported file type .Debian",
                   "twice.txt.gz.gz": "unsupported file type .gz.gz"}
    readme = loaded(tmp_path / "README.Debian.gz")  # a README is text whatever follows its name
    assert isinstance(readme, Document) and readme.kind == "text" and "/etc" in readme.text

    news = loaded(tmp_path / "NEWS.gz")
    assert isinstance(news, Document) and news.kind == "text" and "remembers the last search" in news.text
    guide = loaded(tmp_path / "guide.md.gz")
    assert isinstance(guide, Document) and guide.kind == "markdown"
    assert [c.heading for c in chunk_text(guide.text, guide.kind)] == ["Guide > Install"]
    page = loaded(tmp_path / "page.html.gz")
    assert isinstance(page, Document) and "Body text." in page.text and "x()" not in page.text
    reasons = {name: r.reason for name in ("cut.txt.gz", "fake.gz", "bomb.txt.gz")
               if isinstance(r := loaded(tmp_path / name), Skip)}
    assert reasons["cut.txt.gz"].startswith("not a readable gzip file")
    assert reasons["fake.gz"].startswith("not a readable gzip file")
    assert reasons["bomb.txt.gz"] == "too large (over 0 MiB uncompressed)"


INFO_MANUAL = """This is demo.info, produced by makeinfo version 6.8 from demo.texi.

\x1f
File: demo.info,  Node: Top,  Next: Reversing,  Up: (dir)

Demo
****

* Menu:

* Reversing::   Lines last first.

\x1f
File: demo.info,  Node: Reversing,  Prev: Top,  Up: Top

1 Reversing lines
*****************

1.1 ‘tac’: Concatenate and write files in reverse
=================================================

‘tac’ copies each FILE to standard output, reversing the records.

\x00\x08[index\x00\x08]
* Menu:

* tac:     Reversing.   (line 6)

\x1f
Tag Table:
Node: Top\x7f98
Node: Reversing\x7f260
\x1f
End Tag Table
"""


def test_an_info_manual_and_its_parts_read_without_navigation(tmp_path):
    import gzip

    (tmp_path / "demo.info").write_text(INFO_MANUAL)
    (tmp_path / "big.info-2.gz").write_bytes(gzip.compress(INFO_MANUAL.encode()))
    (tmp_path / "big.info.gz").write_bytes(gzip.compress(b"This is big.info.\n\n\x1f\nIndirect:\nbig.info-1: 1201\n"))
    files, skipped = loaders.discover([tmp_path])
    assert {f.name for f in files} == {"demo.info", "big.info-2.gz", "big.info.gz"} and not skipped
    for name in ("demo.info", "big.info-2.gz"):
        doc = loaded(tmp_path / name)
        assert isinstance(doc, Document) and doc.kind == "text"
        assert "\x1f" not in doc.text and "Node:" not in doc.text and "Tag Table" not in doc.text
        assert "\x00" not in doc.text and "* tac:" not in doc.text  # an index node is neither binary nor text
        assert doc.text.count("\n") == INFO_MANUAL.split("\x1f\nTag Table")[0].count("\n")  # lines kept
        # line numbers stay the file's: the title is where it is in the manual
        assert doc.text.splitlines()[18] == "1.1 ‘tac’: Concatenate and write files in reverse"  # line 19
        tac = next(c for c in chunk_text(doc.text, doc.kind) if "reversing the records" in c.text)
        assert tac.heading == "1 Reversing lines > 1.1 ‘tac’: Concatenate and write files in reverse"
        assert tac.line_start <= 19 and tac.line_end >= 22  # the title's line and the text's
    index = loaded(tmp_path / "big.info.gz")
    assert isinstance(index, Document) and index.text.strip() == "This is big.info."


POD_PAGE = """\
=encoding utf8

=head1 NAME

Mail::Address - parse mail addresses

=head1 METHODS

=head2 Constructors

=over 4

=item Mail::Address-E<gt>B<parse>($line)

Split a header line into C<Mail::Address> objects, see L<the Mail::Header
documentation|Mail::Header> or C<<
$obj->format >>.

    my @addrs = Mail::Address->parse($line);

=back

=begin html

<p>Only for the HTML page.</p>

=end html

=cut
"""


def test_a_perl_pod_page_is_read_as_its_sections(tmp_path):
    """Perl's documentation (``.pod``, perldoc pages) was skipped as an unsupported type: it is read with its
    ``=head`` sections as headings, titled by its NAME line, formatting codes unwrapped, lines the file's."""
    folder = tmp_path / "perl"
    folder.mkdir()
    (folder / "Address.pod").write_text(POD_PAGE)
    files, skipped = loaders.discover([folder])
    assert [f.name for f in files] == ["Address.pod"] and skipped == []
    document = load(files[0], read_bytes(files[0]))
    assert isinstance(document, Document)
    from halguru.rag.chunking import document_title

    assert document_title(document.text, document.kind) == "Mail::Address - parse mail addresses"
    chunks = chunk_text(document.text, document.kind, size=64, overlap=0)
    method = next(c for c in chunks if "Split a header line" in c.text)
    assert method.heading == "METHODS > Constructors"
    assert "Mail::Address->parse($line)" in method.text  # codes unwrapped, also across lines
    assert "Split a header line into Mail::Address objects, see the Mail::Header\ndocumentation or \n" \
        "$obj->format." in method.text
    assert "    my @addrs = Mail::Address->parse($line);" in method.text  # verbatim, as written
    assert (method.line_start, method.line_end) == (9, 19)
    assert not any("=over" in c.text or "=item" in c.text or "HTML page" in c.text or "E<gt>" in c.text
                   for c in chunks)


ORG_PAGE = """\
#+TITLE: Backup guide

* Installing
Run the installer from the release page.

** On Debian
Use apt to install the package.

#+BEGIN_SRC sh
* not a heading
#+END_SRC

* Restoring files
Pick a snapshot and copy the files back.
"""

ADOC_PAGE = """\
= Backup Guide
:toc:

== Installing

Run the installer from the release page.

=== On Debian

Use apt to install the package.

----
== not a heading
----

== Restoring files

Pick a snapshot and copy the files back.
"""


def test_asciidoc_and_org_pages_are_read_by_their_sections(tmp_path):
    """``.adoc`` and ``.org`` files were plain text: their headings headed nothing, and ``== Restoring files``
    ended one chunk while its paragraph began the next. Their sections now head their chunks (lines the file's);
    a heading-like line in a code block is none."""
    from halguru.rag.chunking import document_title

    for name, page, title, top in (("guide.org", ORG_PAGE, "Backup guide", ""),
                                   ("guide.adoc", ADOC_PAGE, "Backup Guide", "Backup Guide > ")):
        path = tmp_path / name
        path.write_text(page)
        document = load(path, read_bytes(path))
        assert isinstance(document, Document)
        assert (document.title or document_title(document.text, document.kind)) == title
        chunks = chunk_text(document.text, document.kind, size=16, overlap=0)
        restore = next(c for c in chunks if "Pick a snapshot" in c.text)
        assert restore.heading == f"{top}Restoring files" and "Restoring files" in restore.text
        assert restore.line_start == page.split("\n").index(next(x for x in page.split("\n") if "Restoring" in x)) + 1
        debian = next(c for c in chunks if "Use apt" in c.text)
        assert debian.heading == f"{top}Installing > On Debian"
        assert all("not a heading" not in c.heading for c in chunks)


def test_perl_modules_and_scripts_are_read_as_code_named_by_their_subs(tmp_path):
    """Perl's .pm and .pl files beside its .pod pages (/usr/share/perl5) are source code: each sub heads its
    chunk, as a Python def does (they were skipped as an unsupported type)."""
    (tmp_path / "Address.pm").write_text(
        "package Mail::Address;\nuse strict;\n\nsub parse {\n    my ($class, $line) = @_;\n"
        "    return split /,/, $line;\n}\n\nsub format {\n    my @addrs = @_;\n    return join ', ', @addrs;\n}\n")
    (tmp_path / "send.pl").write_text("#!/usr/bin/perl\nuse Mail::Address;\nprint Mail::Address->parse($ARGV[0]);\n")
    files, skipped = loaders.discover([tmp_path])
    assert {f.name for f in files} == {"Address.pm", "send.pl"} and not skipped
    document = loaded(tmp_path / "Address.pm")
    assert not isinstance(document, Skip) and document.kind == "code"
    chunks = chunk_text(document.text, document.kind, size=20, overlap=0)
    assert any(c.heading == "format" and "join" in c.text for c in chunks)
