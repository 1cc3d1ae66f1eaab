"""Knowledge bases through the Python API and the CLI, on real LanceDB folders with the real default embedder."""

from __future__ import annotations

import json
import subprocess

import pytest

from halguru import rag
from halguru.rag.errors import KnowledgeError
from halguru.rag.indexer import ingest_lock


def test_ingest_every_file_type_and_search_each_mode(docs, halguru_home):
    kb = rag.create("docs")
    assert kb.meta.embedder == "minilm" and kb.meta.dimension == 384
    assert (halguru_home / "knowledge" / "docs" / "meta.json").is_file()
    summary = rag.ingest("docs", [docs])
    assert sorted(summary.added) == ["docs/faq.txt", "docs/guide.md", "docs/page.html", "docs/report.pdf",
                                     "docs/tool.py"]
    assert summary.skipped == [] and summary.chunks >= 5
    top = {mode: rag.search("docs", "How do I install halguru?", k=3, mode=mode)[0] for mode in
           ("vector", "fts", "hybrid")}
    assert top["fts"].citation == top["hybrid"].citation == "docs/guide.md#Install"
    assert top["hybrid"].lines == "3-5" and "pipx install" in top["hybrid"].text
    assert rag.search("docs", "solar megawatt hours", k=1)[0].source == "docs/report.pdf"
    assert rag.search("docs", "invoice totals", k=1, mode="fts")[0].source == "docs/tool.py"
    assert "docs/tool.py" in {h.source for h in rag.search("docs", "invoice totals", k=2)}
    html = rag.search("docs", "team plan price per month", k=1)[0]
    assert html.source == "docs/page.html" and "tracking" not in html.text
    only = rag.search("docs", "install", k=5, where="source LIKE '%faq%'")
    assert only and {h.source for h in only} == {"docs/faq.txt"}
    info = rag.open_base("docs").info()
    assert (info.documents, info.chunks) == (5, summary.chunks) and info.size_bytes > 0


def test_incremental_update_and_prune(docs):
    rag.create("docs")
    first = rag.ingest("docs", [docs])
    again = rag.ingest("docs", [docs])
    assert again.chunks == 0 and len(again.unchanged) == 5
    (docs / "faq.txt").write_text("The office cat is called Byte now.\n")
    (docs / "guide.md").unlink()
    (docs / "new.md").write_text("# New\n\nA new page about backups.\n")
    changed = rag.ingest("docs", [docs])
    assert changed.updated == ["docs/faq.txt"] and changed.added == ["docs/new.md"]
    assert rag.search("docs", "office cat", k=1, mode="fts")[0].text.startswith("The office cat is called Byte")
    assert not any("Pixel" in h.text for h in rag.search("docs", "Pixel cat", k=10, mode="fts"))
    assert "docs/guide.md" in rag.open_base("docs").info(with_sources=True).sources  # kept without --prune
    pruned = rag.ingest("docs", [docs], prune=True)
    assert pruned.removed == ["docs/guide.md"]
    info = rag.open_base("docs").info(with_sources=True)
    assert "docs/guide.md" not in info.sources and info.documents == 5
    assert info.chunks < first.chunks + 2


def test_embedder_mismatch_empty_base_bad_where_and_locked_base(docs):
    kb = rag.create("docs")
    with pytest.raises(KnowledgeError, match="no documents yet, run halguru kb ingest"):
        rag.search("docs", "anything")
    rag.ingest("docs", [docs])
    with pytest.raises(KnowledgeError, match=r"halguru kb reindex docs --embedder openai:x"):
        rag.search("docs", "q", embedder="openai:x")
    with pytest.raises(KnowledgeError, match="bad --where"):
        rag.search("docs", "q", where="source LIKE")
    for trailing in ("source LIKE '%guide%' garbage", "1=1; DROP TABLE chunks"):  # ignored before: all results
        with pytest.raises(KnowledgeError, match="bad --where"):
            rag.search("docs", "q", where=trailing)
    assert {h.source for h in rag.search("docs", "q", where="source LIKE '%guide%'")} == {"docs/guide.md"}
    with ingest_lock(kb), pytest.raises(KnowledgeError, match="is being ingested by pid"):
        rag.ingest("docs", [docs])
    with pytest.raises(KnowledgeError, match="already exists"):
        rag.create("docs")
    with pytest.raises(KnowledgeError, match="no knowledge base 'nope'"):
        rag.search("nope", "q")


def test_cli_create_ingest_search_list_show_optimize_drop(cli, docs):
    assert "Created knowledge base team" in cli("kb", "create", "team").output
    failed = cli("kb", "ingest", "team", str(docs), str(docs / "missing.md"), code=1)  # a named path is missing
    assert "no such file or folder" in str(failed.exception) and "nothing was ingested" in str(failed.exception)
    out = cli("kb", "ingest", "team", str(docs)).output
    assert "5 added, 0 updated" in out
    hits = json.loads(cli("kb", "search", "team", "install halguru", "--json", "-k", "2").output)
    assert len(hits) == 2 and {"source", "heading", "lines", "score", "text"} <= set(hits[0])
    assert hits[0]["source"] == "docs/guide.md"
    text = cli("kb", "search", "team", "refunds", "--mode", "fts", "-k", "1").output
    assert "[1] docs/faq.txt" in text and "Refunds take fourteen days" in text
    listing = cli("kb", "list").output
    assert "team" in listing and "minilm" in listing and " 5 " in listing and "KB" in listing
    assert "docs/report.pdf" in cli("kb", "show", "team").output
    assert "Optimized team" in cli("kb", "optimize", "team").output
    assert "Kept." in cli("kb", "drop", "team", input="n\n", code=1).output
    assert "Dropped knowledge base team" in cli("kb", "drop", "team", "--yes").output
    assert "No knowledge bases yet" in cli("kb", "list").output


def test_cli_errors_are_one_line(cli_error, halguru_cmd, subprocess_env, docs):
    subprocess.run([*halguru_cmd, "kb", "create", "kb1"], env=subprocess_env, check=True, capture_output=True)
    assert "no documents yet, run halguru kb ingest kb1" in cli_error("kb", "search", "kb1", "hello")
    subprocess.run([*halguru_cmd, "kb", "ingest", "kb1", str(docs)], env=subprocess_env, check=True,
                   capture_output=True)
    assert "bad --where" in cli_error("kb", "search", "kb1", "q", "--where", "source LIKE")
    assert "already exists" in cli_error("kb", "create", "kb1")
    assert "no knowledge base 'zzz'" in cli_error("kb", "show", "zzz")
    # one folder on macOS and Windows: a copied HALGURU_HOME would mix the two bases' chunks
    assert cli_error("kb", "create", "KB1") == ("Error: knowledge base 'kb1' exists, and names that differ only in "
                                                "case are one folder on macOS and Windows: use 'kb1', or another name")


def test_piped_search_is_not_wrapped_and_shows_names_as_they_are(halguru_cmd, subprocess_env, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    long_line = "The backup runs nightly at two and keeps thirty days of snapshots " * 3
    (folder / "[bold]backup.md").write_text(f"# Backups\n\n{long_line.strip()}\n")
    env = {k: v for k, v in subprocess_env.items() if k != "COLUMNS"}
    for args in (("kb", "create", "n"), ("kb", "ingest", "n", str(folder))):
        subprocess.run([*halguru_cmd, *args], env=env, check=True, capture_output=True)
    out = subprocess.run([*halguru_cmd, "kb", "search", "n", "when do backups run"], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.splitlines()[0].startswith("[1] notes/[bold]backup.md#Backups  lines 1-3")  # no markup eaten
    assert long_line.strip() in out.splitlines()  # one line, not wrapped at 80 columns


@pytest.mark.llama
def test_llama_cpp_embedder_on_the_bundled_gguf(docs):
    kb = rag.create("gguf", "llama-cpp")
    assert kb.meta.embedder == "llama-cpp" and kb.meta.dimension == 576
    rag.ingest("gguf", [docs])
    assert rag.search("gguf", "How do I install halguru?", k=1)[0].citation == "docs/guide.md#Install"
    with pytest.raises(KnowledgeError, match="kb reindex gguf --embedder"):
        rag.search("gguf", "install", embedder="wordllama")


def test_a_mistyped_embedder_is_named_with_the_closest_one_and_the_profiles(halguru_home):
    with pytest.raises(KnowledgeError) as raised:
        rag.create("typo", "fsat")
    message = str(raised.value)
    assert "unknown embedder 'fsat' (did you mean 'fast'?)" in message
    assert "default and fast are profiles: minilm and wordllama" in message
    with pytest.raises(KnowledgeError) as raised:
        rag.create("typo", "nope")
    assert "did you mean" not in str(raised.value)  # no far-fetched guess
    assert [base.name for base in rag.list_bases()] == []  # nothing half-made


def test_a_later_chunk_of_a_document_shown_above_says_so(cli, monkeypatch):
    """Each document's best chunk comes first, its others after every other document's: the later one's higher
    score read as a sorting bug ([2] 0.49, [3] 0.05, [4] 1.49) until the header says where it comes from."""
    from halguru.rag import query

    hits = query.Hits([query.Hit("menu.md", "Menu > Drinks", "1-4", 0.49, "Espresso"),
                       query.Hit("hours.md", "", "1-2", 0.05, "Open at eight"),
                       query.Hit("menu.md", "Menu > Cakes", "5-9", 1.49, "Cheesecake")])
    monkeypatch.setattr(query, "search", lambda *a, **kw: hits)
    out = cli("kb", "search", "cafe", "coffee").output.splitlines()
    assert out[0].startswith("[1] menu.md#Drinks  lines 1-4")
    assert out[3].startswith("[2] hours.md  lines 1-2")
    assert out[6].startswith("[3] more from menu.md#Cakes  lines 5-9 · score 1.4900")
    assert [h["source"] for h in json.loads(cli("kb", "search", "cafe", "coffee", "--json").output)] == \
        ["menu.md", "hours.md", "menu.md"]  # the JSON is the same hits, unlabelled


def test_a_mistyped_base_name_suggests_the_close_one_and_keeps_the_list_short(cli_error):
    """`kb search odx ...` listed every base (hundreds on a busy machine) and left the user to spot the typo."""
    for name in ("manual", "cafe", *(f"team-{i:02}" for i in range(30))):
        rag.create(name, embedder="fast")
    error = cli_error("kb", "search", "manaul", "refunds?")
    assert error.startswith("Error: no knowledge base 'manaul' (did you mean 'manual'?; known: cafe, manual, team-00,")
    assert "32 in all: `halguru kb list`" in error and "team-29" not in error
    assert error.endswith("create it with `halguru kb create manaul`") and "\n" not in error
    assert "did you mean" not in cli_error("kb", "show", "zzz")


def test_a_build_folder_left_out_is_listed_and_can_be_ingested_by_name(cli, tmp_path):
    """A Sphinx project's `docs/build/html` (or a site's `dist/`) was left out without a word: `0 added` and no
    reason, the user's whole documentation missing from the base."""
    docs = tmp_path / "docs"
    for folder in ("build/html", "dist", "node_modules/pkg", "__pycache__", ".cache"):
        (docs / folder).mkdir(parents=True)
    (docs / "build/html/index.html").write_text("<title>Guide</title><p>Install with pipx.</p>", encoding="utf-8")
    (docs / "dist/page.md").write_text("# Page\n\nShipped text.\n", encoding="utf-8")
    (docs / "node_modules/pkg/README.md").write_text("# pkg\n\nA dependency.\n", encoding="utf-8")
    (docs / "intro.md").write_text("# Intro\n\nRead the guide.\n", encoding="utf-8")
    rag.create("docs", embedder="fast")
    out = cli("kb", "ingest", "docs", str(docs)).output
    assert out.startswith("docs: 1 added, 0 updated, 0 unchanged, 0 removed, 3 skipped")
    build = str(docs / "build")
    assert (f"  skipped {build}: a build or dependency folder, not read (to index it, give the folder itself to "
            "`halguru kb ingest`)") in out.splitlines()
    assert f"  skipped {docs / 'node_modules'}: a build or dependency folder" in out
    assert "__pycache__" not in out and ".cache" not in out  # nothing to read there / hidden: said nowhere
    out = cli("kb", "ingest", "docs", build).output
    assert out.startswith("docs: 1 added") and "  skipped" not in out


def test_unsupported_files_are_counted_by_type_not_listed_one_a_line(cli, tmp_path):
    """A documentation folder with 300 images printed 300 `skipped ...png` lines on every ingest, burying the one
    file that could not be read; `-v` still lists each."""
    site = tmp_path / "site"
    site.mkdir()
    for i in range(300):
        (site / f"shot{i:03}.png").write_bytes(b"\x89PNG")
    (site / "font.woff2").write_bytes(b"wOF2")
    (site / "guide.md").write_text("# Guide\n\nInstall with pipx.\n", encoding="utf-8")
    (site / "blank.md").write_text("", encoding="utf-8")
    rag.create("site", embedder="fast")
    lines = cli("kb", "ingest", "site", str(site)).output.splitlines()
    assert lines[0].startswith("site: 1 added, 0 updated, 0 unchanged, 0 removed, 302 skipped")
    assert lines[1:] == [
        f"  skipped {site / 'font.woff2'}: unsupported file type .woff2",
        f"  skipped 300 files: unsupported file type .png (e.g. {site / 'shot000.png'}; -v lists each)",
        f"  skipped {site / 'blank.md'}: empty file",
    ]
    verbose = cli("kb", "ingest", "site", str(site), "-v").output
    assert f"  skipped {site / 'shot299.png'}: unsupported file type .png" in verbose.splitlines()


def test_an_ingest_that_waits_says_for_whom(halguru_cmd, subprocess_env, docs):
    """`kb ingest --wait` behind another ingest sat silent for minutes, as if hung."""
    import contextlib
    import threading

    rag.create("docs", embedder="fast")
    released = threading.Event()
    held = contextlib.ExitStack()
    held.enter_context(ingest_lock(rag.open_base("docs")))
    proc = subprocess.Popen([*halguru_cmd, "kb", "ingest", "docs", str(docs), "--wait"], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    timer = threading.Timer(20, lambda: (released.set(), held.close()))  # without the note: read at the exit
    timer.start()
    first = proc.stderr.readline() if proc.stderr else ""
    assert not released.is_set()
    timer.cancel()
    held.close()
    out, _ = proc.communicate(timeout=120)
    assert first.startswith("note: knowledge base 'docs' is being ingested by pid ")
    assert first.rstrip().endswith("; waiting for it to finish")
    assert proc.returncode == 0 and out.startswith("docs: 5 added")
