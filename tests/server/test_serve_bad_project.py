"""`halguru serve FOLDER` with one bad project fails before its banner, in one line naming the project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.mark.parametrize(("yaml_text", "problem"), [
    ("name: bad\nmodel: nosuchmodel\n", "unknown model 'nosuchmodel'"),
    ("name: bad\nmodel: scripted\nmetadata: {web_chat: everyone}\n", "metadata.web_chat must be"),
    ("name: bad\nmodel: scripted\nmetadata: {web_chat: public, embed_origins: ['*']}\n",
     "metadata.embed_origins must be a list of origins"),
])
def test_one_bad_project_fails_before_the_banner(tmp_path: Path, halguru_cmd, subprocess_env, yaml_text, problem):
    root = tmp_path / "agents"
    (root / "good").mkdir(parents=True)
    (root / "good" / "agent.yaml").write_text("name: good\nmodel: scripted\n")
    (root / "bad").mkdir()
    (root / "bad" / "agent.yaml").write_text(yaml_text)
    proc = subprocess.run([*halguru_cmd, "serve", str(root), "--dev", "--port", "1"], capture_output=True,
                          text=True, env=subprocess_env, timeout=60, start_new_session=True)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "halguru serve:" not in proc.stderr  # no banner
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"Error: agent project {root / 'bad'}: ") and problem in line, line


def test_a_project_whose_name_is_in_the_message_is_still_named(tmp_path: Path, halguru_cmd, subprocess_env):
    """`halguru serve emb`: "emb" is a substring of "metadata.embed_origins", which once passed for naming it."""
    (tmp_path / "emb").mkdir()
    (tmp_path / "emb" / "agent.yaml").write_text(
        "name: emb\nmodel: scripted\nmetadata:\n  web_chat: public\n  embed_origins: ['*']\n")
    proc = subprocess.run([*halguru_cmd, "serve", "emb", "--dev", "--port", "1"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60, start_new_session=True, cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("Error: agent project emb: metadata.embed_origins must be") and "['*']" in line, line
