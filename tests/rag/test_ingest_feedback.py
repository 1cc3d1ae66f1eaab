"""Nothing an ingest meets vanishes unlisted: missing paths fail, odd files are listed, parser warnings kept."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from halguru.rag import loaders
from tests.rag.test_loaders_chunking import loaded, write_pdf


def damaged_pdf(path: Path) -> Path:
    """A PDF whose startxref points to the wrong byte: pypdf repairs it and logs a warning."""
    data = write_pdf(path, ["Hello warning world"]).read_bytes()
    m = re.search(rb"startxref\s+(\d+)", data)
    assert m
    path.write_bytes(data[:m.start(1)] + str(int(m.group(1)) + 7).encode() + data[m.end(1):])
    return path


def test_dangling_symlinks_fifos_and_folder_links_are_listed_with_a_reason(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# fine\n")
    (docs / "gone.md").symlink_to(tmp_path / "nowhere.md")
    os.mkfifo(docs / "pipe.txt")
    (tmp_path / "other").mkdir()
    (docs / "elsewhere").symlink_to(tmp_path / "other", target_is_directory=True)
    files, skipped = loaders.discover([docs])
    assert [f.name for f in files] == ["ok.md"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["gone.md"].startswith("dangling symlink") and "nowhere.md" in reasons["gone.md"]
    assert reasons["pipe.txt"] == "not a regular file (a FIFO)"
    assert reasons["elsewhere"].startswith("symlink to a folder")
    # named explicitly, the same reasons
    _, skipped = loaders.discover([docs / "pipe.txt", docs / "gone.md"])
    assert [s.reason.split(" (")[0] for s in skipped] == ["not a regular file", "dangling symlink"]


def test_a_pdf_parser_warning_is_kept_not_printed(tmp_path: Path, capfd):
    doc = loaded(damaged_pdf(tmp_path / "damaged.pdf"))
    assert isinstance(doc, loaders.Document) and "Hello warning world" in doc.text
    assert any("startxref" in w for w in doc.warnings), doc.warnings
    assert "startxref" not in capfd.readouterr().err


def test_kb_ingest_lists_them_and_a_missing_path_fails(halguru_cmd, subprocess_env, tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nInstall with pipx.\n")
    (docs / "gone.md").symlink_to(tmp_path / "nowhere.md")
    os.mkfifo(docs / "pipe.txt")
    damaged_pdf(docs / "damaged.pdf")

    def halguru(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=subprocess_env,
                              timeout=120, start_new_session=True)

    assert halguru("kb", "create", "docs").returncode == 0
    proc = halguru("kb", "ingest", "docs", str(tmp_path / "no-such-folder"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: no such file or folder: {tmp_path / 'no-such-folder'}; nothing was ingested into docs"]
    proc = halguru("kb", "ingest", "docs", str(docs))
    assert proc.returncode == 0, proc.stderr
    assert "2 added" in proc.stdout and "2 skipped" in proc.stdout and "1 warning(s)" in proc.stdout
    assert f"skipped {docs / 'gone.md'}: dangling symlink" in proc.stdout
    assert f"skipped {docs / 'pipe.txt'}: not a regular file (a FIFO)" in proc.stdout
    assert f"warning {docs / 'damaged.pdf'}: pypdf: incorrect startxref" in proc.stdout
    assert "startxref" not in proc.stderr


def test_an_agents_knowledge_folder_warns_once_about_what_it_cannot_index(write_agent, monkeypatch, capsys):
    from halguru.agents.loader import load_agent
    from halguru.rag import agent as rag_agent

    monkeypatch.setattr(rag_agent, "RECHECK_SECONDS", 0.0)
    folder = write_agent("name: helper\nmodel: scripted\nknowledge: [notes]\nretrieval: {mode: auto, top_k: 3}\n")
    notes = folder / "notes"
    notes.mkdir()
    (notes / "cat.md").write_text("# Cat\n\nThe office cat is called Pixel.\n")
    (notes / "blob.txt").write_bytes(b"\x00\x01binary" * 10)
    (notes / "gone.md").symlink_to(folder / "nowhere.md")
    agent = load_agent(folder)
    agent.knowledge.retrieve("cat")
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning: knowledge folder" in line]
    assert len(lines) == 2, lines
    assert any("blob.txt: binary file" in line for line in lines)
    assert any("gone.md: dangling symlink" in line for line in lines)
    (notes / "dog.md").write_text("# Dog\n\nThe dog is Rex.\n")  # the folder changed: ingested again
    agent.knowledge.retrieve("dog")
    assert "knowledge folder" not in capsys.readouterr().err  # said once, not on every change
