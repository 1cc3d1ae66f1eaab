"""`halguru test` records an agent's knowledge searches and replays them without the knowledge base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

AGENT = """\
name: helper
model: scripted
instructions: Answer from the documents.
knowledge: [docs]
retrieval: {mode: auto, top_k: 2}
"""

TESTS = """\
tests:
  - name: refunds
    turns:
      - user: How long do refunds take?
        expect:
          contains: refunds
"""


def _project(tmp_path: Path) -> Path:
    """An agent answering from docs/faq.txt, with one conversation test."""
    folder = tmp_path / "helper"
    (folder / "docs").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "docs" / "faq.txt").write_text("Refunds take fourteen days.\n\nThe office cat is called Pixel.\n")
    (folder / "agent.yaml").write_text(AGENT)
    (folder / "tests" / "test_helper.yaml").write_text(TESTS)
    return folder


def test_knowledge_searches_are_recorded_and_replayed(tmp_path: Path, cli):
    folder = _project(tmp_path)

    recorded = cli("test", str(folder), "--record")
    assert "1 passed, 0 failed" in recorded.stdout, recorded.stdout
    recording = json.loads(next((folder / "tests").glob("*.json")).read_text())
    searches = recording["tests"]["refunds"]["retrievals"]
    assert [s["query"] for s in searches] == ["How long do refunds take?"]
    assert any("fourteen days" in hit["text"] for s in searches for r in s["results"] for hit in r["hits"])

    shutil.rmtree(folder / "docs")  # a live search would now fail: replay must not need the documents
    replayed = cli("test", str(folder))
    assert "1 passed, 0 failed" in replayed.stdout, replayed.stdout


def test_recording_an_unchanged_test_again_leaves_its_file_as_it_was(tmp_path: Path, cli):
    # a search's time (and its scores' last digits) change from run to run but never reach the model: were they
    # kept, every re-record would change the committed recording
    folder = _project(tmp_path)
    recording = folder / "tests" / "test_helper.recording.json"
    cli("test", str(folder), "--record")
    first = recording.read_text()
    cli("test", str(folder), "--record")
    assert recording.read_text() == first
    assert "1 passed" in cli("test", str(folder), "--replay").stdout
