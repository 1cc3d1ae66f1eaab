"""A second newcomer's pass through the README: each mistake is one `Error:` line naming what to change, and
nothing a user wrote is overwritten or left half-written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def _run(halguru_cmd, env, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*halguru_cmd, *args], input=input, capture_output=True, text=True, env=env,
                          timeout=120, start_new_session=True)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("llama_n_ctx", "-5", "greater than or equal to 256"),
    ("llama_n_ctx", "100", "greater than or equal to 256"),
    ("llama_n_threads", "0", "greater than or equal to 1"),
    ("llama_saved_states", "-1", "greater than or equal to 0"),
    # nan read "Input should be less than or equal to 86400" (every comparison with nan is false)
    ("run_lease", "nan", "a number of seconds, not nan"),
    ("embed_deadline", "NaN", "a number of seconds, not NaN"),
    ("database_statement_timeout", "nan", "a number of seconds, not nan"),
])
def test_config_set_refuses_llama_settings_that_cannot_work(cli_error, halguru_home: Path, key, value, message):
    line = cli_error("config", "set", key, value)
    assert line.startswith(f"Error: invalid value '{value}' for {key}: ") and message in line
    assert not (halguru_home / "config.toml").exists()  # nothing written


def test_a_negative_context_from_the_environment_is_one_line_before_any_run(cli_error, write_agent):
    agent = write_agent("name: echo\nmodel: scripted\n")
    line = cli_error("run", str(agent), "Hi", env={"HALGURU_LLAMA_N_CTX": "-5"})
    assert line.startswith("Error: invalid setting llama_n_ctx") and "256" in line


@pytest.mark.parametrize(("script", "expected"), [
    ("- {txt: hello}\n", ":1: reply 1: txt: unknown field"),
    ("- hi\n- tool_calls:\n  - arguments: {}\n", ":3: reply 2: tool_calls.0.name: required field is missing"),
    ("- hi\n- tool_calls:\n  - name: a\n    argumnts: {}\n", ":4: reply 2: tool_calls.0.argumnts: unknown field"),
    ("- 5\n", ":1: reply 1: a reply is a text or a mapping"),
    ("- [\n", ":2:1: invalid YAML: "),
])
def test_a_bad_scripted_model_script_is_one_line_with_its_line(cli_error, write_agent, script, expected):
    agent = write_agent("name: echo\nmodel: scripted:s.yaml\n")
    (agent / "s.yaml").write_text(script, encoding="utf-8")
    line = cli_error("run", str(agent), "Hi")  # refused before any run, in validate's words (file, line, field)
    assert line.startswith(f"Error: {agent / 'agent.yaml'}:2: model: scripted model: {agent / 's.yaml'}{expected}")
    assert cli_error("validate", str(agent)) == line


def test_the_readme_scripted_script_still_runs(cli, write_agent):
    agent = write_agent("name: echo\nmodel: scripted:s.yaml\ntools: [calculator]\n")
    (agent / "s.yaml").write_text(
        '- tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]\n- "17*23 = 391"\n'
        '- {text: "slow answer", token_delay: 0.01}\n', encoding="utf-8")
    assert cli("run", str(agent), "go").stdout.strip() == "17*23 = 391"


def test_logs_export_does_not_overwrite_an_edited_test_without_force(cli, cli_error, write_agent, tmp_path: Path):
    agent = write_agent("name: echo\nmodel: scripted\n")
    cli("run", str(agent), "Hi")
    from halguru.store import open_store

    [run] = open_store().list_runs(limit=1)
    target = tmp_path / "test_from_run.yaml"
    cli("logs", "export", run["id"], "-o", str(target))
    target.write_text("# my edits\n", encoding="utf-8")
    line = cli_error("logs", "export", run["id"], "-o", str(target))
    assert line == f"Error: {target} exists already; pass --force to replace it, or choose another file"
    assert target.read_text(encoding="utf-8") == "# my edits\n"
    cli("logs", "export", run["id"], "-o", str(target), "--force")
    assert "tests:" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_kb_drop_without_an_answer_on_stdin_is_one_line_and_keeps_the_base(halguru_cmd, subprocess_env, cli):
    cli("kb", "create", "cafe", "--embedder", "fast")
    proc = _run(halguru_cmd, subprocess_env, "kb", "drop", "cafe")
    assert proc.returncode == 1 and "Aborted" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: no answer on standard input to 'Delete knowledge base cafe (0 documents, 0 chunks)?': "
        "pass --yes to drop cafe without asking"]
    assert "cafe" in cli("kb", "list").stdout
    proc = _run(halguru_cmd, subprocess_env, "kb", "drop", "cafe", input="y\n")  # a piped answer still counts
    assert proc.returncode == 0 and "Dropped knowledge base cafe." in proc.stdout


@pytest.mark.parametrize("command", ["chat", "dev"])
def test_chat_and_dev_refuse_an_unknown_model_before_they_start(cli_error, write_agent, command):
    agent = write_agent("name: echo\nmodel: scripted\n")
    line = cli_error(command, str(agent), "--model", "smolm2")
    assert line.startswith("Error: --model: unknown model 'smolm2' (did you mean 'smollm2'?)")
    line = cli_error(command, str(agent), "--model", str(agent / "missing.gguf"))
    assert line.startswith("Error: --model: ") and "missing.gguf" in line


def test_a_schedule_error_names_the_line_of_its_field_without_pydantic_tags(cli_error, write_agent):
    agent = write_agent("name: digest\nmodel: scripted\nschedules:\n  - name: morning\n    cron: '0 25 * * *'\n"
                        "    timezone: UTC\n    input: go\n")
    line = cli_error("validate", str(agent))
    assert line.startswith(f"Error: {agent / 'agent.yaml'}:5: schedules.0.cron: invalid cron expression '0 25 * * *'")
    (agent / "agent.yaml").write_text("name: digest\nmodel: scripted\nschedules:\n  - name: morning\n"
                                      "    cron: '0 9 * * *'\n    timezone: Europe/Pariss\n    input: go\n")
    line = cli_error("validate", str(agent))
    assert line.startswith(f"Error: {agent / 'agent.yaml'}:6: schedules.0.timezone: unknown time zone")
    assert "Value error" not in line


def test_a_blank_reject_reason_tells_the_model_no_reason(write_agent):
    from halguru import run_sync
    from halguru.models.scripted import ScriptedModel
    from halguru.orchestration.approvals import reject

    agent = write_agent("name: mailer\nmodel: scripted\ntools: [send_email]\napprovals: [send_email]\n",
                        "from halguru import tool\n\n\n@tool\ndef send_email(to: str) -> str:\n"
                        "    \"\"\"Send.\"\"\"\n    return 'sent'\n")
    model = ScriptedModel([{"tool_calls": [{"id": "c1", "name": "send_email", "arguments": {"to": "ann"}}]}, "OK."])
    paused = run_sync(agent, "mail ann", model=model)
    done = reject(paused.run_id, "   ", model=model)
    assert model.requests[-1].messages[-1].content == "error: a human refused this call"
    [rejected] = [e for e in done.events if e.type == "approval_rejected"]
    assert rejected.reason == ""


@pytest.mark.parametrize(("config", "expected"), [
    ("prot: 8001\n", "invalid serve setting prot: unknown setting (did you mean 'port'?)"),
    ("auth:\n  registraton: open\n", "invalid serve setting auth.registraton: unknown setting"),
])
def test_a_misspelt_serve_setting_is_named_as_unknown(tmp_path: Path, config: str, expected: str):
    from halguru_server.settings import load_settings

    from halguru.errors import HalguruError

    path = tmp_path / "serve.yaml"
    path.write_text(config, encoding="utf-8")
    with pytest.raises(HalguruError) as info:
        load_settings(path)
    assert str(info.value) == expected


@pytest.mark.llama
def test_ctrl_c_during_a_prompts_evaluation_exits_130_not_a_crash(halguru_cmd, subprocess_env, write_agent):
    """The worker thread was still in llama_decode when the process exited: llama.cpp's static destructors
    then ran under it and the process died of SIGSEGV instead of exiting 130."""
    import signal
    import time

    agent = write_agent("name: long\nmodel: smollm2\nlimits: {max_tokens: 8}\n")
    proc = subprocess.Popen([*halguru_cmd, "run", str(agent), "Summarise: " + "the cat sat on the mat. " * 480,
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the model loads (under a second), then evaluates the ~3,400-token prompt
            if '"type":"model_call"' in line:
                break
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()


def test_keys_agents_names_each_known_agent_once(write_agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from halguru_server.cli import check_key_agents

    from halguru.errors import HalguruError

    write_agent("name: twin\nmodel: scripted\n", name="a")
    write_agent("name: twin\nmodel: scripted\n", name="b")  # a copy of a project keeps its name
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HalguruError) as info:
        check_key_agents(["basic"])
    assert str(info.value) == (f"--agents: no agent named 'basic' in {tmp_path} (what `halguru serve` serves from "
                               "here: run this where it runs, or pass --config naming its agents); known: twin")


MARK_AND_SEND = '''\
from pathlib import Path
from halguru import tool


@tool
def mark(x: int) -> str:
    """Mark."""
    with open(Path(__file__).parent / "marks.log", "a") as f:
        f.write("mark\\n")
    return "marked"


@tool
def send(x: int) -> str:
    """Send."""
    if not (Path(__file__).parent / "fixed").exists():
        raise RuntimeError("smtp down")
    return "sent"
'''


def test_resuming_a_failed_workflow_continuation_reuses_the_steps_before_the_pause(write_agent):
    """README: a failed workflow run resumes 'after fixing the tool that failed', its finished steps never run
    again. A continuation (after an approval) that failed had only a 'start' checkpoint: step a ran twice."""
    from halguru import run_sync
    from halguru.orchestration.approvals import approve, list_pending
    from halguru.orchestration.durable import list_runs, resume

    agent = write_agent("name: dw\ntools: [mark, send]\napprovals: [send]\nworkflow:\n  steps:\n"
                        "    - {id: a, tool: mark, args: {x: 1}}\n    - {id: b, tool: send, args: {x: 2}}\n",
                        MARK_AND_SEND)
    assert run_sync(agent, "go").status == "paused"
    [pending] = list_pending()
    failed = approve(pending["run_id"])
    assert failed.status == "failed" and "smtp down" in (failed.error or "")
    [row] = [r for r in list_runs("failed") if r["id"] == failed.run_id]
    assert row["checkpoint"] == "step a ok"
    (agent / "fixed").touch()
    again = resume(failed.run_id)
    assert again.status == "paused"  # step b asks for its approval again; step a is reused
    assert (agent / "marks.log").read_text() == "mark\n"
    [pending] = list_pending()
    assert approve(pending["run_id"]).status == "ok"
    assert (agent / "marks.log").read_text() == "mark\n"


def test_validate_warns_when_tool_choice_required_has_no_tool_to_call(halguru_cmd, subprocess_env, write_agent):
    agent = write_agent("name: tc\nmodel: scripted\ntool_choice: required\n")
    proc = _run(halguru_cmd, subprocess_env, "validate", str(agent))
    assert proc.returncode == 0 and proc.stdout.startswith("OK: tc")
    assert proc.stderr.strip() == (f"Warning: {agent / 'agent.yaml'}:3: tool_choice: required but this agent has no "
                                   "tools, so the model just answers; list some in tools: or use auto")
    (agent / "agent.yaml").write_text("name: tc\nmodel: scripted\ntool_choice: required\ntools: [calculator]\n")
    assert _run(halguru_cmd, subprocess_env, "validate", str(agent)).stderr == ""


@pytest.mark.parametrize("variable", ["HALGURU_LLAMA_N_CTX", "HALGURU_LLAMA_N_CTX_FILE"])
def test_config_set_says_when_the_environment_wins_over_it(halguru_cmd, subprocess_env, tmp_path: Path, variable):
    """`config set llama_n_ctx 8192` said `Set llama_n_ctx = 8192` while HALGURU_LLAMA_N_CTX=2048 kept the value
    at 2048: the user was told it changed, and it had not."""
    value = "2048"
    if variable.endswith("_FILE"):
        (tmp_path / "n_ctx").write_text("2048\n", encoding="utf-8")
        value = str(tmp_path / "n_ctx")
    env = {**subprocess_env, variable: value}
    proc = _run(halguru_cmd, env, "config", "set", "llama_n_ctx", "8192")
    assert proc.returncode == 0 and proc.stdout.startswith("Set llama_n_ctx = 8192 in ")
    assert proc.stderr.strip().splitlines() == [
        f"Warning: {variable} is set, and the environment wins over config.toml: llama_n_ctx stays 2048 "
        f"until you unset {variable}"]
    quiet = _run(halguru_cmd, subprocess_env, "config", "set", "llama_n_ctx", "4096")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_models_default_says_when_halguru_default_model_wins_over_it(halguru_cmd, subprocess_env):
    proc = _run(halguru_cmd, {**subprocess_env, "HALGURU_DEFAULT_MODEL": "scripted"}, "models", "default", "smollm2")
    assert proc.returncode == 0 and proc.stdout.startswith("Default model is now smollm2 ")
    assert proc.stderr.strip().splitlines() == [
        "Warning: HALGURU_DEFAULT_MODEL is set, and the environment wins over config.toml: default_model stays "
        "scripted until you unset HALGURU_DEFAULT_MODEL"]
