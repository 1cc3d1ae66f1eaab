"""A command asked for by another name (`kb delete` for `kb drop`) names the one that does it; before, click said
only "No such command 'delete'", and its own did-you-mean finds typos, not synonyms."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize(("typed", "meant"), [
    ("kb delete docs", "'drop'"), ("kb rm docs", "'drop'"), ("kb ls", "'list'"), ("keys delete k", "'revoke'"),
    ("runs stop run_1", "'cancel'"), ("jobs kill job_1", "'cancel'"), ("deployments remove shop 1", "'delete'"),
    ("deployments undo shop", "'rollback'"), ("users delete a@example.com", "'disable'"),
    ("deploy x", "'publish' or 'deployments'"),
])
def test_a_synonym_names_the_command_that_does_it(halguru_cmd, subprocess_env, typed: str, meant: str) -> None:
    proc = subprocess.run([*halguru_cmd, *typed.split()], capture_output=True, text=True, env=subprocess_env,
                          timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    word = typed.split()[1] if typed.split()[0] != "deploy" else "deploy"
    assert f"Error: No such command '{word}'. Did you mean {meant}?" in proc.stderr


def test_a_typo_keeps_clicks_own_suggestion_and_a_stranger_word_gets_none(halguru_cmd, subprocess_env) -> None:
    typo = subprocess.run([*halguru_cmd, "kb", "dorp", "x"], capture_output=True, text=True, env=subprocess_env,
                          timeout=60)
    assert "No such command 'dorp'. Did you mean 'drop'?" in typo.stderr
    stranger = subprocess.run([*halguru_cmd, "kb", "zebra"], capture_output=True, text=True, env=subprocess_env,
                              timeout=60)
    assert stranger.returncode == 2 and stranger.stderr.strip().endswith("Error: No such command 'zebra'.")
