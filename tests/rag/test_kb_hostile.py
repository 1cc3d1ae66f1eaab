"""What a hostile or careless user did to knowledge bases (an outside pass): names that are paths, two projects'
agents of one name, a re-index cut short, files emptied or reached twice, damaged bases, absurd ``-k``, a UTF-8
file with a stray byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halguru import rag
from halguru.rag.store import knowledge_root, list_names


def test_a_name_that_is_a_path_reaches_nothing_outside_the_knowledge_root(cli_error, tmp_path: Path):
    """`kb drop /some/folder --yes` deleted any folder holding a base-like meta.json; only `create` checked."""
    victim = tmp_path / "precious"
    (victim / "sub").mkdir(parents=True)
    (victim / "meta.json").write_text(json.dumps({"name": "x", "embedder": "wordllama", "dimension": 64}))
    (victim / "sub" / "f.txt").write_text("keep me")
    knowledge_root().mkdir(parents=True, exist_ok=True)
    relative = f"../{Path('..') / victim.relative_to(tmp_path)}"
    for name in (str(victim), relative, "a/b"):
        for command in (["kb", "drop", name, "--yes"], ["kb", "show", name], ["kb", "search", name, "q"]):
            assert "invalid knowledge base name" in cli_error(*command)
    assert (victim / "sub" / "f.txt").read_text() == "keep me"


def test_two_agents_of_one_name_in_two_projects_do_not_share_a_base(write_agent, tmp_path: Path):
    from halguru.rag.agent import KnowledgeRetriever as Knowledge

    one, two = tmp_path / "one", tmp_path / "two"
    for root, fact in ((one, "The museum opens at nine."), (two, "The vault code is 4242.")):
        (root / "knowledge").mkdir(parents=True)
        (root / "knowledge" / "facts.md").write_text(f"# Facts\n\n{fact}\n")
    first = Knowledge(["knowledge"], one, "helper", embedder="fast")
    second = Knowledge(["knowledge"], two, "helper", embedder="fast")
    [a], [b] = first.bases(), second.bases()
    assert a == "helper-knowledge" and b.startswith("helper-knowledge-") and a != b
    found = [hit.text for hits in first.retrieve("vault code") for hit in hits.hits]
    assert found and not any("4242" in text for text in found)
    assert first.bases() == [a] and second.bases() == [b]  # stable across calls


def test_a_base_shared_before_bases_recorded_their_folder_sheds_the_other_folders_files(tmp_path: Path):
    """A base two folders had filled (made before the folder was recorded) keeps only its folder's files."""
    from halguru.rag.agent import KnowledgeRetriever as Knowledge

    ours, theirs = tmp_path / "ours" / "knowledge", tmp_path / "theirs" / "knowledge"
    for folder, fact in ((ours, "Opening hours are nine to five."), (theirs, "The vault code is 4242.")):
        folder.mkdir(parents=True)
        (folder / "facts.md").write_text(f"# Facts\n\n{fact}\n")
    rag.create("helper-knowledge", embedder="fast")
    rag.ingest("helper-knowledge", [ours, theirs])
    [name] = Knowledge(["knowledge"], ours.parent, "helper", embedder="fast").bases()
    assert name == "helper-knowledge"
    assert sorted(rag.open_base(name).info(with_sources=True).sources) == ["knowledge/facts.md"]


def test_a_reindex_cut_short_keeps_every_document(docs, monkeypatch):
    """Re-index dropped the base first: killed or stopped half-way it held part of its documents, and the next
    re-index rebuilt only those. The new base is now built beside the old, which stays whole until the swap."""
    from halguru.rag import indexer

    rag.create("docs", embedder="fast")
    rag.ingest("docs", [docs])
    real = indexer.ingest

    def cut(kb, paths, **kwargs):  # type: ignore[no-untyped-def]
        real(kb, [next(Path(docs).iterdir())], **kwargs)  # one file in, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(indexer, "ingest", cut)
    with pytest.raises(KeyboardInterrupt):
        rag.reindex("docs", "wordllama:128")
    info = rag.open_base("docs").info()
    assert (info.embedder, info.documents) == ("wordllama", 5)
    assert list_names() == ["docs"] and sorted(p.name for p in knowledge_root().iterdir()) == [".locks", "docs"]
    monkeypatch.setattr(indexer, "ingest", real)
    assert "5 added" in rag.reindex("docs", "wordllama:128").line()
    info = rag.open_base("docs").info()
    assert (info.embedder, info.documents) == ("wordllama:128", 5)
    assert sorted(p.name for p in knowledge_root().iterdir()) == [".locks", "docs"]


def test_a_file_emptied_or_reached_twice(tmp_path: Path):
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\naardvark\n")
    (folder / "b.md").write_text("# Beta\n\nbison\n")
    (folder / "link.md").symlink_to(folder / "a.md")
    rag.create("dup", embedder="fast")
    summary = rag.ingest("dup", [folder, folder / "a.md", folder / "a.md"])
    assert len(summary.added) == 2  # one file, one copy, however many routes lead to it
    assert [h.source for h in rag.search("dup", "aardvark", k=10, mode="fts")] == ["dup/a.md"]
    (folder / "b.md").write_text("")  # emptied: its old text went on being found (and cited)
    summary = rag.ingest("dup", [folder])
    assert summary.removed == ["dup/b.md"] and any("empty file" in why for _, why in summary.skipped)
    assert rag.search("dup", "bison", k=10, mode="fts") == []


def test_a_notes_file_of_headings_only_is_indexed_not_skipped(tmp_path: Path):
    """A Markdown file with nothing but headings was skipped as 'no text to index': its words were never found."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "wifi.md").write_text("# Wi-Fi password: lighthouse123\n\n## Door code 4471\n")
    (folder / "guide.md").write_text("# Guide\n\nThe kettle is in the cupboard.\n\n## Empty section\n")
    rag.create("notes", embedder="fast")
    summary = rag.ingest("notes", [folder])
    assert sorted(summary.added) == ["notes/guide.md", "notes/wifi.md"] and summary.skipped == []
    [hit] = rag.search("notes", "lighthouse123", k=10, mode="fts")
    assert hit.source == "notes/wifi.md" and "Door code 4471" in hit.text
    assert [h.source for h in rag.search("notes", "kettle", k=10, mode="fts")] == ["notes/guide.md"]
    assert all(h.source == "notes/wifi.md" for h in rag.search("notes", "section", k=10, mode="fts"))  # as before:
    # a file with text keeps its headings as labels, never a chunk of a lone heading


def test_a_damaged_base_is_one_line_and_the_others_are_still_listed(cli, cli_error, docs):
    rag.create("good", embedder="fast")
    rag.ingest("good", [docs])
    rag.create("broken", embedder="fast")
    rag.ingest("broken", [docs])
    rag.create("newer", embedder="fast")
    for data in (knowledge_root() / "broken" / "chunks.lance" / "data").iterdir():
        data.unlink()
    meta = knowledge_root() / "newer" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "from_the_future": 1}))  # a newer halguru's key
    listed = cli("kb", "list")
    assert "good" in listed.output and "newer" in listed.output
    assert "knowledge base 'broken' cannot be read" in listed.output  # said (stderr), not a traceback
    said = cli_error("kb", "search", "broken", "install")
    # which file is missing, not where in LanceDB's Rust sources that was noticed (".../lance-io-13.0", cut short)
    assert "cannot be read (Not found: " in said and ".lance)" in said and ".cargo" not in said, said
    assert "drop it with `halguru kb drop broken`" in cli_error("kb", "ingest", "broken", str(docs))
    cli("kb", "drop", "broken", "--yes")
    assert list_names() == ["good", "newer"]
    meta.write_text("[1, 2]")
    assert "is not a base's metadata" in cli_error("kb", "show", "newer")


def test_absurd_k_is_one_line(cli_error, docs):
    rag.create("docs", embedder="fast")
    rag.ingest("docs", [docs])
    assert cli_error("kb", "search", "docs", "install", "-k", "4294967296") == (
        "Error: k must be between 1 and 10000")


def test_utf8_with_a_stray_byte_stays_utf8():
    from halguru.rag.loaders import load

    text = load(Path("menu.txt"), "Crème brûlée, “Straße” ".encode() + b"\xe9\n").text  # type: ignore[union-attr]
    assert text.startswith("Crème brûlée, “Straße” ")
    latin = load(Path("old.txt"), "Café déjà vu".encode("latin-1")).text  # type: ignore[union-attr]
    assert latin == "Café déjà vu"


def test_files_of_one_name_are_told_apart_in_citations(tmp_path: Path):
    """Twelve packages' README.Debian given one by one were one document to rank and cite; two folders called
    docs both cited docs/install.md; two bases' passages of one reference were both numbered [1]."""
    from halguru.rag.agent import Citations, context_block

    for package, word in (("alpha", "aardvark"), ("beta", "bison")):
        (tmp_path / package / "docs").mkdir(parents=True)
        (tmp_path / package / "README.Debian").write_text(f"Notes\n\n{word} notes for {package}.\n")
        (tmp_path / package / "docs" / "install.md").write_text(f"# Install\n\nInstall {package} with {word}.\n")
    rag.create("pkgs", embedder="fast")
    rag.ingest("pkgs", [tmp_path / "alpha" / "README.Debian", tmp_path / "beta" / "README.Debian",
                        tmp_path / "alpha" / "docs", tmp_path / "beta" / "docs"])
    sources = sorted(rag.open_base("pkgs").info(with_sources=True).sources)
    assert sources == ["README.Debian", "beta/README.Debian", "beta/docs/install.md", "docs/install.md"]
    assert {h.source for h in rag.search("pkgs", "bison", k=5, mode="fts")} == {"beta/README.Debian",
                                                                                 "beta/docs/install.md"}
    (tmp_path / "beta" / "secret.txt").write_text("not for this base\n")  # beside a file given alone
    assert "4 added" in rag.reindex("pkgs", "wordllama:128").line()  # the same files, under the same names
    assert sorted(rag.open_base("pkgs").info(with_sources=True).sources) == sources
    rag.create("other", embedder="fast")
    rag.ingest("other", [tmp_path / "beta" / "docs"])
    citations = Citations()
    mine = rag.search("pkgs", "aardvark install", k=1, mode="fts")[0]
    theirs = rag.search("other", "bison install", k=1, mode="fts")[0]
    assert mine.citation == theirs.citation == "docs/install.md#Install"
    block = context_block([mine, theirs], citations)
    assert "[1] docs/install.md#Install, lines 1-3 (pkgs)" in block
    assert "[2] docs/install.md#Install, lines 1-3 (other)" in block
    assert citations.footer("It is [2].").endswith("[2] docs/install.md#Install, lines 1-3 (other)")


def test_a_file_name_with_a_line_break_is_one_line_of_a_listing(cli, tmp_path: Path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "two\nlines.md").write_text("# Title\n\nzebra\n")
    rag.create("odd", embedder="fast")
    out = cli("kb", "ingest", "odd", str(folder), "-v").output
    assert "  added: odd/two\\nlines.md" in out.splitlines()
    assert "odd/two\\nlines.md" in cli("kb", "show", "odd").output.splitlines()[-1]
    assert cli("kb", "search", "odd", "zebra").output.splitlines()[0].startswith("[1] odd/two\\nlines.md#Title")


def test_an_ingest_without_prune_says_which_indexed_files_are_gone(cli, tmp_path: Path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\naardvark\n")
    (folder / "b.md").write_text("# B\n\nbison\n")
    rag.create("notes", embedder="fast")
    cli("kb", "ingest", "notes", str(folder))
    (folder / "b.md").unlink()
    out = cli("kb", "ingest", "notes", str(folder)).output
    assert out.strip().endswith("; 1 indexed file(s) no longer exist and are still searched (--prune removes them)")
    assert "removes them" not in cli("kb", "ingest", "notes", str(folder), "--prune").output


def test_citations_give_lines_only_where_they_are_the_files(docs, cli):
    """An HTML page cited "lines 1-17", which in the file are its DOCTYPE and head: a laid-out document's lines
    count the text it became. Markdown's and plain text's are the file's."""
    from halguru.rag.agent import reference

    rag.create("docs", embedder="fast")
    rag.ingest("docs", [docs])
    html = rag.search("docs", "team plan price", k=5, mode="fts")
    pdf = rag.search("docs", "solar megawatt", k=5, mode="fts")
    guide = rag.search("docs", "pipx install", k=5, mode="fts")
    page = next(h for h in html if h.source.endswith(".html"))
    report = next(h for h in pdf if h.source.endswith(".pdf"))
    markdown = next(h for h in guide if h.source.endswith(".md"))
    assert ", lines" not in reference(page) and ", lines" not in reference(report)
    assert reference(markdown).endswith(f", lines {markdown.lines}")
    out = cli("kb", "search", "docs", "team plan price", "-m", "fts").output
    assert "page.html" in out and "lines" not in out.splitlines()[0]


def test_a_profile_names_the_embedder_it_stands_for(docs):
    """rag.search(..., embedder="fast") on a wordllama base was refused and told to re-index to `fast`."""
    rag.create("docs", embedder="fast")
    rag.ingest("docs", [docs])
    assert rag.search("docs", "install", k=1, embedder="fast")
    assert rag.search("docs", "install", k=1, embedder="wordllama")


def test_a_name_with_a_trailing_line_break_is_refused(cli_error):
    """`$` matched before a final newline: `kb create $'evil\\n'` passed the name check, then LanceDB failed with a
    traceback and left a folder behind."""
    line = cli_error("kb", "create", "evil\n")
    assert "invalid knowledge base name" in line
    assert not knowledge_root().exists() or not list(knowledge_root().iterdir())


def test_a_base_made_again_after_its_meta_json_was_deleted_starts_empty(docs, cli):
    """`kb create` over a folder whose meta.json was deleted reused its table: the new base answered with the old
    chunks, and with another embedder held vectors of two dimensions' worth of meaning (or failed to write)."""
    rag.create("docs", embedder="fast")
    rag.ingest("docs", [docs])
    # and the note of an ingest killed there, which would have the new base say its files were not searched yet
    rag.open_base("docs").begin_ingest("halguru kb ingest docs /elsewhere", ["/elsewhere/a.md"])
    (knowledge_root() / "docs" / "meta.json").unlink()
    assert list_names() == []  # no metadata, no base
    cli("kb", "create", "docs", "--embedder", "wordllama:128")
    info = rag.open_base("docs").info()
    assert (info.embedder, info.documents, info.chunks, info.unfinished) == ("wordllama:128", 0, 0, "")
    with pytest.raises(rag.KnowledgeError, match="has no documents yet, run halguru kb ingest docs PATH"):
        rag.search("docs", "office cat", k=5, mode="fts")
    (docs / "extra.md").write_text("# Capybara\n\nThe capybara sleeps by the pond.\n")
    assert len(rag.ingest("docs", [docs / "extra.md"]).added) == 1
    assert [h.source for h in rag.search("docs", "capybara", k=5)] == ["extra.md"]


@pytest.mark.parametrize(("size", "overlap", "said"), [
    (5000, 32, "chunk size must be 16 to 1024 tokens, not 5000"),
    (8, 0, "chunk size must be 16 to 1024 tokens, not 8"),
    (256, 256, "chunk overlap must be 0 to 255 tokens (less than the chunk size), not 256"),
    (256, -1, "chunk overlap must be 0 to 255 tokens (less than the chunk size), not -1"),
])
def test_a_chunk_size_out_of_bounds_is_one_line_and_makes_no_base(cli_error, size: int, overlap: int, said: str):
    """--chunk-size had no upper bound: 100000 made every file one chunk, embedded by its first 128 word pieces and
    put whole into an agent's prompt."""
    assert cli_error("kb", "create", "big", "--chunk-size", str(size), "--chunk-overlap", str(overlap)) \
        == f"Error: {said}"
    assert list_names() == [] and not (knowledge_root() / "big").exists()


def test_a_file_saved_as_utf16_or_utf32_is_read_not_skipped_as_binary():
    from halguru.rag.loaders import Skip, load

    for encoding in ("utf-16", "utf-16-be", "utf-32"):
        data = "# Café\r\n\r\nPenguins nest on the ice.\r\n".encode(encoding)
        if not encoding.endswith("-be"):
            assert data[:2] in (b"\xff\xfe", b"\xfe\xff")  # Python writes the byte-order mark
        else:
            data = b"\xfe\xff" + data
        doc = load(Path("notes.md"), data)
        assert not isinstance(doc, Skip), (encoding, doc)
        assert doc.text == "# Café\n\nPenguins nest on the ice.\n"
    assert isinstance(load(Path("x.md"), b"\xff\xfe\x00\xd8"), Skip)  # a lone surrogate: still not text


def test_a_file_replaced_by_a_folder_or_a_link_is_said_to_be_gone_and_prune_removes_it(cli, tmp_path: Path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\naardvark\n")
    (folder / "b.md").write_text("# B\n\nbison\n")
    (folder / "c.md").write_text("# C\n\ncapybara\n")
    rag.create("notes", embedder="fast")
    cli("kb", "ingest", "notes", str(folder))
    (folder / "b.md").unlink()
    (folder / "b.md").mkdir()  # a folder of that name now
    (folder / "b.md" / "inner.md").write_text("# Inner\n\nibex\n")
    (folder / "c.md").unlink()
    (folder / "c.md").symlink_to("a.md")  # now the same file as a.md, indexed once
    out = cli("kb", "ingest", "notes", str(folder)).output
    assert out.strip().endswith("; 2 indexed file(s) no longer exist and are still searched (--prune removes them)")
    assert "removes them" not in cli("kb", "ingest", "notes", str(folder), "--prune").output
    assert not rag.search("notes", "bison", mode="fts") and not rag.search("notes", "capybara", mode="fts")
    assert rag.search("notes", "ibex", mode="fts")


def _no_room() -> None:
    """In the child: no file may grow (a full disk's writes fail: here with EFBIG instead of ENOSPC)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_base_can_be_dropped_when_no_file_can_grow(halguru_cmd, subprocess_env, docs):
    import subprocess

    rag.create("full", embedder="fast")
    from halguru.rag.indexer import ingest

    ingest("full", [docs])
    proc = subprocess.run([*halguru_cmd, "kb", "drop", "full", "--yes"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60, preexec_fn=_no_room)
    assert proc.returncode == 0, proc.stderr  # it frees room; it refused with "File too large" / "No space left"
    assert "full" not in list_names()


def test_no_moment_of_an_update_holds_a_file_twice(tmp_path: Path):
    """A search runs against whatever version of the base is current: each one an update commits holds every
    file once (its new chunks went in and its old ones out in two commits, and a search between got both)."""
    from halguru.rag.indexer import ingest
    from halguru.rag.store import KnowledgeBase

    folder = tmp_path / "notes"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.md").write_text(f"# {name}\n\nversion 1 of {name}\n")
    rag.create("notes", embedder="fast")
    ingest("notes", [folder])
    (folder / "a.md").write_text("# a\n\nversion 2 of a, longer now\n\nwith a second paragraph\n")
    ingest("notes", [folder])
    table = KnowledgeBase.open("notes").table
    assert table.version >= 3  # made, first batch, the update (and its index)
    for version in [v["version"] for v in table.list_versions()]:
        table.checkout(version)
        rows = table.to_arrow().select(["path", "doc_hash"]).to_pylist()
        hashes: dict[str, set[str]] = {}
        for row in rows:
            hashes.setdefault(row["path"], set()).add(row["doc_hash"])
        assert all(len(h) == 1 for h in hashes.values()), (version, hashes)


def test_an_empty_path_is_refused_not_read_as_the_current_folder(cli_error, docs, monkeypatch):
    monkeypatch.chdir(docs)  # what "" stood for: every file of the folder the command ran in was ingested
    rag.create("notes", embedder="fast")
    said = cli_error("kb", "ingest", "notes", str(docs / "guide.md"), "")
    assert said == ("Error: an empty path was given; nothing was ingested into notes (to ingest the current folder, "
                    "give `.`)")
    assert rag.open_base("notes").table.count_rows() == 0


def test_an_ingest_note_is_one_line_when_piped(halguru_cmd, subprocess_env, docs):
    import subprocess

    from halguru.rag.indexer import ingest
    from halguru.rag.store import KnowledgeBase

    rag.create("notes", embedder="fast")
    ingest("notes", [docs])
    kb = KnowledgeBase.open("notes")
    kb.meta.chunker = 0  # chunked by an older halguru: the ingest says so in a note
    kb.save_meta()
    (docs / "new.md").write_text("# New\n\nnarwhals\n")
    proc = subprocess.run([*halguru_cmd, "kb", "ingest", "notes", str(docs)], capture_output=True, text=True,
                          env={**subprocess_env, "COLUMNS": "80"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("note: notes was chunked by an older halguru")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # it was cut at 80 columns mid-sentence


def test_a_long_bad_where_is_one_short_line(cli_error, docs):
    rag.create("notes", embedder="fast")
    from halguru.rag.indexer import ingest

    ingest("notes", [docs])
    where = " OR ".join(['source LIKE "%a%"'] * 800)  # double quotes name a column: an error
    said = cli_error("kb", "search", "notes", "cat", "--where", where)
    assert said.startswith("Error: bad --where 'source LIKE ")
    assert len(said) < 600, len(said)  # the whole 16 KB filter was echoed, twice over in part
