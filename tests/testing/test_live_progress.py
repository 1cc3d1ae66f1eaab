"""`halguru test --live` and `halguru eval` say what they are doing while they work; eval errors exit 1."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TESTS = """\
tests:
  - name: greets
    turns:
      - user: Hello
        expect: {contains: Hello}
  - name: echoes
    turns:
      - user: Bikes
        expect: {contains: Bikes}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "echo"
    (folder / "tests").mkdir(parents=True)
    (folder / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
    (folder / "tests" / "test_echo.yaml").write_text(TESTS)
    return folder


def halguru(halguru_cmd, env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=120,
                          start_new_session=True)


def test_test_live_reports_each_test_as_it_goes(project, halguru_cmd, subprocess_env):
    proc = halguru(halguru_cmd, subprocess_env, "test", str(project), "--live")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:3] == ["running 2 test(s) live", "test_echo::greets passed", "test_echo::echoes passed"], lines
    assert "2 passed, 0 failed" in proc.stdout


def test_eval_reports_each_model_and_test(project, halguru_cmd, subprocess_env, tmp_path):
    script = tmp_path / "no.yaml"
    script.write_text('- "No."\n- "No."\n')
    proc = halguru(halguru_cmd, subprocess_env, "eval", str(project), "--models", f"scripted,scripted:{script}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == ["scripted: running 2 test(s) live", "scripted: test_echo::greets passed",
                     "scripted: test_echo::echoes passed", f"scripted:{script}: running 2 test(s) live",
                     f"scripted:{script}: test_echo::greets FAILED", f"scripted:{script}: test_echo::echoes FAILED"]
    assert "100% (2/2)" in proc.stdout and "0% (0/2)" in proc.stdout


def test_eval_with_an_unknown_model_is_one_line_and_runs_nothing(project, cli_error):
    line = cli_error("eval", str(project), "--models", "scripted,nope")
    assert line.startswith("Error: unknown model 'nope'")


def test_eval_with_a_model_that_fails_exits_1_naming_it(project, halguru_cmd, subprocess_env, tmp_path):
    missing = tmp_path / "missing.gguf"
    proc = halguru(halguru_cmd, subprocess_env, "eval", str(project), "--models", f"scripted,{missing}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "100% (2/2)" in proc.stdout  # the other model's results are still shown
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(missing) in errors[0], proc.stderr


@pytest.mark.llama
def test_test_live_says_it_is_loading_the_local_model(project, halguru_cmd, subprocess_env):
    proc = halguru(halguru_cmd, subprocess_env, "test", str(project), "--live", "--model", "smollm2", "-k", "greets")
    assert proc.returncode in (0, 1), proc.stderr  # the tiny model may or may not say Hello
    lines = proc.stderr.splitlines()
    assert lines[:2] == ["running 1 test(s) live", "loading model smollm2…"], lines
    assert lines[2].startswith("test_echo::greets ")


def test_test_record_and_auto_report_progress_and_replays_stay_quiet(project, halguru_cmd, subprocess_env):
    recorded = halguru(halguru_cmd, subprocess_env, "test", str(project), "--record")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stderr.splitlines()[:3] == ["running 2 test(s) live", "test_echo::greets passed",
                                                "test_echo::echoes passed"]
    replayed = halguru(halguru_cmd, subprocess_env, "test", str(project))  # auto: both recorded, so replayed
    assert replayed.returncode == 0 and replayed.stderr == "", replayed.stderr
    assert "2 passed, 0 failed" in replayed.stdout


def test_a_run_of_live_and_replayed_tests_counts_each_kind(project, halguru_cmd, subprocess_env):
    """It said "running 2 test(s) live" though one of them replayed its recording."""
    recorded = halguru(halguru_cmd, subprocess_env, "test", str(project), "--record", "-k", "greets")
    assert recorded.returncode == 0, recorded.stderr
    mixed = halguru(halguru_cmd, subprocess_env, "test", str(project))
    assert mixed.returncode == 0, mixed.stderr
    assert mixed.stderr.splitlines() == ["running 2 test(s): 1 live, 1 replayed", "test_echo::greets passed",
                                         "test_echo::echoes passed"], mixed.stderr


def test_pass_rates_name_the_file_where_two_files_have_a_test_of_one_name(project, cli):
    """Two `greets` tests of two files read "greets 100%, greets 0%": which was which?"""
    (project / "tests" / "test_other.yaml").write_text(
        "tests:\n  - name: greets\n    turns:\n      - user: Hi\n        expect: {contains: nope}\n")
    out = cli("test", str(project), "--live", "--repeat", "2", code=1).stdout
    assert "pass rates: test_echo::greets 100%, echoes 100%, test_other::greets 0%" in out, out
