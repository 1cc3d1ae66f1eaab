"""A fourth newcomer's pass through the README, from an empty folder: what a newcomer types wrong is told what to
type instead."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_run_with_only_a_message_inside_a_project_says_to_name_it_dot(cli, write_agent,
                                                                       monkeypatch: pytest.MonkeyPatch):
    """`chat`, `validate` and `test` take the project folder as `.`; `run "Hello"` there read the message as the
    project and said only "Missing argument 'input'"."""
    monkeypatch.chdir(write_agent("name: echo\nmodel: scripted\n"))
    result = cli("run", "it's me", code=2)
    assert result.output.splitlines()[-1] == ("Error: Missing argument 'input'. Here, in an agent project, name it "
                                              "`.`: halguru run . 'it'\"'\"'s me'")
    assert "You said: it's me" in cli("run", ".", "it's me").output


def test_run_with_only_a_message_elsewhere_is_click_s_usage_error(cli, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert cli("run", "Hello", code=2).output.splitlines()[-1] == "Error: Missing argument 'input'."


def test_kb_ingest_of_a_missing_folder_names_it_as_typed(cli_error, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    """The tour's `halguru kb ingest docs ./docs` in a folder without docs/ said "no such file or folder: docs;
    nothing was ingested into docs": the base's name, as far as one could tell."""
    monkeypatch.chdir(tmp_path)
    assert cli_error("kb", "ingest", "docs", "./docs") == ("Error: no such file or folder: ./docs; nothing was "
                                                           "ingested into docs")


@pytest.mark.parametrize(("tools_py", "error"), [
    ("import os\n\nraise RuntimeError('boom')\n", "a/tools.py:3: RuntimeError: boom"),
    ("import requests2\n", "a/tools.py:1: ModuleNotFoundError: No module named 'requests2'"),
])
def test_a_tools_file_that_fails_to_import_names_its_line_from_a_relative_path(
        cli_error, write_agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools_py: str, error: str):
    """`halguru validate my-agent` (relative, as the tour types it) lost the line: the traceback names the file
    absolute; only an absolute project path got `tools.py:3:`."""
    write_agent("name: a\nmodel: scripted\n", tools_py, name="a")
    monkeypatch.chdir(tmp_path)
    assert cli_error("validate", "a") == f"Error: {error}"


def test_logs_conversation_takes_last_as_logs_show_does(cli, cli_error, write_agent):
    """`last` works for `logs show`, `replay`, `export` and `-c`; `logs conversation last` said "no conversation
    'last'", sending a newcomer to copy a 22-character id."""
    assert cli_error("logs", "conversation", "last") == ("Error: no conversation yet: `halguru run` or `halguru "
                                                         "chat` an agent first")
    agent = write_agent("name: echo\nmodel: scripted\n")
    cli("run", str(agent), "First")
    cli("run", str(agent), "Second")
    transcript = cli("logs", "conversation", "last").output
    assert "user: Second" in transcript and "First" not in transcript


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no folder can be made")
def test_new_in_a_folder_that_cannot_be_written_names_the_project_not_a_staging_folder(cli_error):
    """It said `Error: /proc/.x4-lsn2b4lz: No such file or directory`, naming the hidden folder the copy is staged
    in."""
    assert cli_error("new", "x4", "--dir", "/proc") == ("Error: cannot create /proc/x4: No such file or directory; "
                                                        "nothing was created")


@pytest.mark.parametrize("command", [["run", "PATH", "Hi"], ["chat", "PATH"]])
def test_a_misspelt_knowledge_folder_is_refused_before_any_run_with_its_line(
        cli_error, write_agent, halguru_home: Path, command: list[str]):
    """`halguru run` stored a failed run saying "agent a: knowledge: 'knowlege' is neither a knowledge base ...
    (run run_...)", without the line or the did-you-mean `halguru validate` gives; `chat` failed at each message."""
    agent = write_agent("name: a\nmodel: scripted\nknowledge: [knowlege]\n", name="a")
    (agent / "knowledge").mkdir()
    args = [str(agent) if arg == "PATH" else arg for arg in command]
    assert cli_error(*args, input="Hi\n") == (
        f"Error: {agent / 'agent.yaml'}:3: knowledge.0: 'knowlege' is neither a folder ({agent / 'knowlege'} does "
        "not exist) nor a knowledge base (did you mean 'knowledge'?) (see `halguru kb list`)")
    from halguru.store import open_store

    assert open_store().list_runs(10, test_runs=True) == []


def test_a_list_written_as_one_name_says_how_to_write_a_list(cli_error, write_agent):
    """`tools: calculator` said "tools: Input should be a valid list"."""
    agent = write_agent("name: a\nmodel: scripted\ntools: calculator\n", name="a")
    assert cli_error("validate", str(agent)) == (f"Error: {agent / 'agent.yaml'}:3: tools: should be a list: [a, b], "
                                                 "or one '- a' a line")
