"""The CLI users expect: shell completion and -V, the config file and the default model, built-in models
kept safe, `halguru tools`, `halguru logs` filters, follow, prune and narrow or piped output, and edited
approval arguments checked before the approval is used up."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from halguru import __version__

ECHO_AGENT = "name: echoer\nmodel: scripted\ntools: [calculator]\n"
LONG_INPUT = "please summarise " + " ".join(f"paragraph{i}" for i in range(30))


def run(halguru_cmd, env, *args: str, code: int = 0, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          start_new_session=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


# --- completion and -V -----------------------------------------------------------------------------


def test_version_short_flag(halguru_cmd, subprocess_env):
    assert run(halguru_cmd, subprocess_env, "-V").stdout.strip() == f"halguru {__version__}"


@pytest.mark.parametrize("args", [("--debug", "logs", "show", "run_nope"), ("logs", "show", "run_nope", "--debug"),
                                  ("logs", "--debug", "show", "run_nope")])
def test_debug_before_or_after_the_command_shows_the_traceback(halguru_cmd, subprocess_env, args):
    proc = subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=subprocess_env, timeout=60,
                          start_new_session=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Traceback") and "StoreError: no run 'run_nope'" in proc.stderr


def test_debug_after_dashes_is_an_argument(cli, write_agent):
    assert "--debug" in cli("run", str(write_agent(ECHO_AGENT)), "--", "--debug").stdout  # the input, echoed


@pytest.mark.parametrize(("command", "usage"), [
    (("run",), "Usage: halguru run [OPTIONS] PATH INPUT"),
    (("test",), "Usage: halguru test [OPTIONS] [PATH]"),
    (("runs", "approve"), "Usage: halguru runs approve [OPTIONS] RUN_ID"),
    (("config", "set"), "Usage: halguru config set [OPTIONS] KEY VALUE"),
])
def test_usage_lines_name_arguments_in_capitals(cli, command, usage):
    """typer 0.29 wrote `{path} {input}`, while the help's text says INPUT."""
    assert cli(*command, "--help").stdout.splitlines()[0] == usage


def test_shell_completion_is_offered_and_completes(halguru_cmd, subprocess_env, tmp_path):
    help_text = run(halguru_cmd, subprocess_env, "--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    # the shell named, not detected from the process tree (a test runner's parent may be no shell at all:
    # "Shell  not supported"); typer's own switch for that
    named = {**subprocess_env, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = run(halguru_cmd, named, "--show-completion", "bash").stdout
    assert "_halguru_completion" in script and "complete " in script
    env = {**named, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    run(halguru_cmd, env, "--install-completion", "bash")
    assert "halguru.sh" in (tmp_path / ".bashrc").read_text()
    # what the installed script asks the CLI when the user presses Tab
    tab = {**subprocess_env, "_HALGURU_COMPLETE": "complete_bash", "COMP_WORDS": "halguru logs --sta",
           "COMP_CWORD": "2"}
    assert run(halguru_cmd, tab).stdout.split() == ["--status"]


# --- config file and default model ------------------------------------------------------------------


def test_config_set_show_and_unset(cli, halguru_home):
    from halguru.config import get_settings, reset_settings

    out = cli("config", "set", "llama_n_ctx", "8192").stdout
    assert "llama_n_ctx = 8192" in out
    assert (halguru_home / "config.toml").read_text() == "llama_n_ctx = 8192\n"
    reset_settings()
    assert get_settings().llama_n_ctx == 8192  # the settings read it
    shown = cli("config", "show").stdout
    [row] = [line for line in shown.splitlines() if line.startswith("llama_n_ctx")]
    assert "8192" in row and "config.toml" in row
    # the paths used, not "-" (their defaults live under home)
    assert f"db_path{' ' * 21}{halguru_home / 'halguru.db'}  (default)" in shown.splitlines()
    assert f"knowledge_path{' ' * 14}{halguru_home / 'knowledge'}  (default)" in shown.splitlines()
    assert json.loads(cli("config", "show", "--json").stdout)["run_lease"] == {"value": 30.0, "source": "default"}
    path = halguru_home / "config.toml"
    assert cli("config", "unset", "llama_n_ctx").stdout == f"llama_n_ctx removed from {path}\n"
    reset_settings()
    assert get_settings().llama_n_ctx == 4096
    assert cli("config", "unset", "llama_n_ctx").stdout == f"llama_n_ctx is not set in {path}; nothing to remove\n"
    said = cli("config", "set", "database_url", "postgresql://app:hunter2@db.example.com/halguru").stdout
    assert said == f"Set database_url = postgresql://app:***@db.example.com/halguru in {path}\n"  # not echoed
    assert "hunter2" in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600  # the owner's only


def test_environment_wins_over_the_config_file(cli, halguru_home, monkeypatch):
    from halguru.config import get_settings, reset_settings

    cli("config", "set", "run_lease", "12.5")
    monkeypatch.setenv("HALGURU_RUN_LEASE", "7")
    reset_settings()
    assert get_settings().run_lease == 7
    [row] = [line for line in cli("config", "show").stdout.splitlines() if line.startswith("run_lease")]
    assert "env HALGURU_RUN_LEASE" in row


def test_an_empty_variable_is_not_named_as_the_source(cli, halguru_home, monkeypatch):
    """``HALGURU_RUN_LEASE=`` counts as unset (the value shown was the file's), but config show said
    ``(env HALGURU_RUN_LEASE)``; a variable spelt in lower case is read (pydantic-settings) and named."""
    from halguru.config import reset_settings

    cli("config", "set", "run_lease", "60")
    for name in ("HALGURU_RUN_LEASE", "HALGURU_DB_PATH", "HALGURU_DEFAULT_MODEL"):
        monkeypatch.setenv(name, "")
    reset_settings()
    rows = {line.split()[0]: line for line in cli("config", "show").stdout.splitlines() if line.strip()}
    assert rows["run_lease"].endswith(f"60.0  ({halguru_home / 'config.toml'})"), rows["run_lease"]
    assert rows["db_path"].endswith(f"{halguru_home / 'halguru.db'}  (default)"), rows["db_path"]
    assert rows["default_model"].endswith("smollm2  (default)"), rows["default_model"]
    monkeypatch.setenv("halguru_default_model", "scripted")
    reset_settings()
    [row] = [line for line in cli("config", "show").stdout.splitlines() if line.startswith("default_model")]
    assert row.endswith("scripted  (env halguru_default_model)"), row


@pytest.mark.parametrize(("args", "message"), [
    (("config", "set", "llama_n_ctx", "lots"), "Error: invalid value 'lots' for llama_n_ctx: "),
    (("config", "set", "run_lease", "0"), "Error: invalid value '0' for run_lease: "),
    (("config", "set", "run_lease", "-5"), "Error: invalid value '-5' for run_lease: "),  # not taken for an option
    (("config", "unset", "nope"), "Error: unknown setting 'nope'"),
    (("config", "set", "defualt_model", "x"), "Error: unknown setting 'defualt_model': did you mean 'default_model'?"),
    (("models", "remove", "smollm2"), "Error: 'smollm2' is built in (llama-cpp provider) and cannot be removed"),
    (("models", "default", "no-such-model"), "Error: unknown model 'no-such-model'"),
    (("models", "add", "smollm2", "--openai-base-url", "http://127.0.0.1:9/v1"),
     "Error: 'smollm2' is a built-in model (llama-cpp); pass --force to shadow it"),
    (("models", "add", "default", "--openai-base-url", "http://127.0.0.1:9/v1"), "Error: 'default' is reserved"),
    (("logs", "--since", "yesterday"), "Error: --since: 'yesterday' is not a duration"),
    (("logs", "--status", "done"), "Error: --status: unknown status 'done'"),
    (("logs", "prune", "--older-than", "30"), "Error: --older-than: '30' is not a duration"),
    (("logs", "prune", "--older-than", "0m"), "Error: --older-than: '0m' must be longer than zero"),
])
def test_errors_are_one_line(cli_error, args, message):
    assert cli_error(*args).startswith(message)


def test_a_broken_config_file_is_one_line(cli_error, halguru_home, write_agent):
    halguru_home.mkdir(parents=True, exist_ok=True)
    (halguru_home / "config.toml").write_text("default_model = \n")
    line = cli_error("run", str(write_agent(ECHO_AGENT)), "hi")
    assert "config.toml is not valid TOML" in line
    (halguru_home / "config.toml").write_text("llama_n_ctx = 'big'\n")
    assert cli_error("config", "show").startswith(
        f"Error: invalid setting llama_n_ctx (llama_n_ctx in {halguru_home / 'config.toml'}; fix it or `halguru "
        "config unset llama_n_ctx`): ")
    # the one place that set it: the error named the variable and the file both, whichever it was
    (halguru_home / "config.toml").unlink()
    assert cli_error("config", "show", env={"HALGURU_RUN_LEASE": "-1"}).startswith(
        "Error: invalid setting run_lease (env HALGURU_RUN_LEASE): ")


def test_default_model_is_set_shown_and_used(cli, write_agent, halguru_home):
    assert cli("models", "default").stdout.strip() == "smollm2"
    assert "Default model is now scripted" in cli("models", "default", "scripted").stdout
    assert 'default_model = "scripted"' in (halguru_home / "config.toml").read_text()
    assert cli("models", "default").stdout.strip() == "scripted"
    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [m["name"] for m in listed if m["default"]] == ["scripted"]
    [row] = [line for line in cli("models", "list").stdout.splitlines() if line.lstrip().startswith("scripted")]
    assert "(default)" in row
    # an agent that names `default` runs on it
    folder = write_agent("name: anyone\nmodel: default\n")
    out = cli("run", str(folder), "hello there").stdout
    assert "You said: hello there" in out
    assert json.loads(cli("logs", "--json").stdout)[0]["model"] == "scripted"  # the trace names what ran
    cli("validate", str(folder))


def test_models_add_replaces_or_shadows_only_with_force(cli, cli_error):
    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:9/v1")
    line = cli_error("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:8/v1")
    assert "model 'remote' is already registered (http://127.0.0.1:9/v1); pass --force" in line
    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:8/v1", "--force")
    cli("models", "add", "smollm2", "--openai-base-url", "http://127.0.0.1:8/v1", "--force")
    entries = {m["name"]: m for m in json.loads(cli("models", "list", "--json").stdout)}
    assert entries["smollm2"]["provider"] == "openai" and entries["remote"]["source"] == "http://127.0.0.1:8/v1"
    out = cli("models", "remove", "smollm2").stdout
    assert "The built-in smollm2 (llama-cpp) is used again." in out
    entries = {m["name"]: m for m in json.loads(cli("models", "list", "--json").stdout)}
    assert entries["smollm2"]["provider"] == "llama-cpp"


# --- tools -------------------------------------------------------------------------------------------

TOOLS_PY = '''\
from halguru import tool


@tool
def lookup(name: str, limit: int = 3) -> str:
    """Find a customer by name."""
    return name


@tool
def unused(x: int) -> int:
    """Not allowed for this agent."""
    return x
'''


def test_tools_lists_builtin_tools_with_schemas(cli):
    out = cli("tools").stdout
    [row] = [line for line in out.splitlines() if line.startswith("calculator")]
    assert "built-in" in row and "expression: string" in row
    tools = {t["name"]: t for t in json.loads(cli("tools", "--json").stdout)}
    assert {"calculator", "current_time", "http_get"} <= set(tools)
    assert tools["calculator"]["parameters"]["required"] == ["expression"]
    assert tools["calculator"]["source"] == "built-in"


def test_tools_show_the_values_an_argument_allows(cli):
    from pathlib import Path

    assistant = Path(__file__).parents[1] / "agents-templates" / "assistant"
    [row] = [line for line in cli("tools", str(assistant)).stdout.splitlines() if line.startswith("convert_")]
    assert 'value: number, unit: "C"|"F"' in row  # Literal["C", "F"], not just "string"


def test_tools_of_a_project(cli, write_agent):
    folder = write_agent("name: shop\nmodel: scripted\ntools: [lookup, calculator]\n", TOOLS_PY)
    tools = {t["name"]: t for t in json.loads(cli("tools", str(folder), "--json").stdout)}
    assert (tools["lookup"]["source"], tools["lookup"]["allowed"]) == ("tools.py", True)
    assert tools["lookup"]["parameters"]["properties"]["limit"]["default"] == 3
    assert (tools["calculator"]["source"], tools["calculator"]["allowed"]) == ("built-in", True)
    assert (tools["unused"]["source"], tools["unused"]["allowed"]) == ("tools.py", False)
    out = cli("tools", str(folder)).stdout
    assert "lookup" in out and "name: string, limit?: integer" in out and "not in tools:" in out


def test_chat_tools_lists_arguments_as_halguru_tools_does(halguru_cmd, subprocess_env, write_agent):
    """Chat's /tools gave ["name", "limit"], a JSON list of the names alone, where `halguru tools` gives each
    argument's type and whether it is optional."""
    folder = write_agent("name: shop\nmodel: scripted\ntools: [lookup, calculator]\n", TOOLS_PY)
    chat = subprocess.run([*halguru_cmd, "chat", str(folder)], input="/tools\n/exit\n", capture_output=True,
                          text=True, env=subprocess_env, timeout=60, start_new_session=True)
    lines = [line.removeprefix("you> ") for line in chat.stdout.splitlines()]
    rows = {line.split()[0]: line for line in lines if line.strip()}
    lookup = r"lookup +name: string, limit\?: integer +Find a customer by name\."
    assert re.fullmatch(lookup, rows["lookup"]), chat.stdout
    assert "expression: string" in rows["calculator"] and '["' not in chat.stdout


# --- logs --------------------------------------------------------------------------------------------


def _run_ids(cli) -> list[str]:
    return [r["id"] for r in json.loads(cli("logs", "--json", "--all").stdout)]


def _age(input: str, seconds: float) -> None:
    """Make the runs with this input look ``seconds`` older (straight in the database file)."""
    from halguru.store import open_store

    db = sqlite3.connect(open_store().path)
    db.execute("UPDATE runs SET started = started - ? WHERE input = ?", (seconds, input))
    db.commit()
    db.close()


def test_logs_filters_by_status_agent_and_since(cli, write_agent):
    echo = write_agent(ECHO_AGENT, name="echo")
    other = write_agent("name: other\nmodel: scripted\n", name="other")
    cli("run", str(echo), "one")
    cli("run", str(other), "two")
    (echo / "fails.yaml").write_text("- {error: boom}\n")
    cli("run", str(echo), "three", "-m", f"scripted:{echo / 'fails.yaml'}", code=1)
    runs = json.loads(cli("logs", "--json").stdout)
    assert [r["input"] for r in runs] == ["three", "two", "one"]
    assert [r["input"] for r in json.loads(cli("logs", "--json", "--status", "failed").stdout)] == ["three"]
    assert [r["input"] for r in json.loads(cli("logs", "--json", "--agent", "echoer").stdout)] == ["three", "one"]
    assert len(json.loads(cli("logs", "--json", "--since", "10m").stdout)) == 3
    _age("one", 7200)
    assert [r["input"] for r in json.loads(cli("logs", "--json", "--since", "1h").stdout)] == ["three", "two"]
    assert cli("logs", "--status", "paused").stdout == "No runs match.\n"  # no test run hides there either


def test_logs_agent_filter_matching_no_agent_says_so(cli, write_agent):
    """`halguru logs --agent Echoer` (the agent is `echoer`) printed "No runs match.", as for an agent whose runs
    were all filtered out: nothing said that no run has that agent's name, nor which name was meant."""
    echo = write_agent(ECHO_AGENT, name="echo")
    cli("run", str(echo), "one")
    assert cli("logs", "--agent", "Echoer").stdout == (
        "No runs match: no run is of agent 'Echoer' (did you mean 'echoer'?).\n")
    assert cli("logs", "--agent", "zzz", "--status", "ok").stdout == (
        "No runs match: no run is of agent 'zzz'; agents with runs: echoer.\n")
    assert cli("logs", "--agent", "echoer", "--status", "failed").stdout == "No runs match.\n"  # the agent has runs
    assert json.loads(cli("logs", "--agent", "Echoer", "--json").stdout) == []
    from halguru.store import open_store

    assert open_store().run_agents() == ["echoer"]


def test_test_runs_are_marked_and_hidden_unless_all(cli, write_agent):
    folder = write_agent(ECHO_AGENT)
    (folder / "tests").mkdir()
    (folder / "tests" / "test_echo.yaml").write_text(
        "tests:\n  - name: echoes\n    turns:\n      - user: ping\n        expect: {contains: ping}\n")
    cli("test", str(folder), "--live")
    assert cli("logs").stdout.endswith("(runs made by `halguru test` show with --all).\n")  # one hides there
    assert cli("runs", "list").stdout == "No runs yet (runs made by `halguru test` show with --all).\n"  # as logs
    assert [r["input"] for r in json.loads(cli("runs", "list", "--all", "--json").stdout)] == ["ping"]
    cli("run", str(folder), "by hand")
    assert [r["input"] for r in json.loads(cli("logs", "--json").stdout)] == ["by hand"]
    every = json.loads(cli("logs", "--json", "--all").stdout)
    assert [r["input"] for r in every] == ["by hand", "ping"]
    events = json.loads(cli("logs", "show", every[1]["id"], "--json").stdout)["events"]
    assert events[0]["metadata"] == {"test": True, "test_case": "test_echo.yaml::echoes"}
    assert "ping" not in cli("logs").stdout and "ping" in cli("logs", "--all").stdout
    assert cli("logs", "--status", "failed").stdout == "No runs match.\n"  # no test run hides there


def test_logs_prune(cli, write_agent):
    folder = write_agent(ECHO_AGENT)
    cli("run", str(folder), "old one")
    cli("run", str(folder), "new one")
    from halguru.store import open_store

    store = open_store()
    _age("old one", 40 * 86400)
    assert cli("logs", "prune", "--older-than", "30d").stdout.strip() == "Deleted 1 run started more than 30d ago."
    assert [r["input"] for r in store.list_runs()] == ["new one"]
    assert len(store.list_conversations()) == 1


def test_logs_at_80_columns_keep_every_column(write_agent, cli):
    folder = write_agent("name: an-agent-with-a-rather-long-name\nmodel: scripted\n")
    cli("run", str(folder), LONG_INPUT)
    [run_id] = _run_ids(cli)
    cli("run", str(folder), "a second one")
    from halguru.store import open_store

    with sqlite3.connect(open_store().path) as db:  # the widest fixed cells: a long status, big token counts
        db.execute("UPDATE runs SET status = 'interrupted', prompt_tokens = 12345, completion_tokens = 6789 "
                   "WHERE id != ?", (run_id,))
    from halguru.cli.app import app

    out = CliRunner().invoke(app, ["logs"], env={"COLUMNS": "80", "NO_COLOR": "1"}).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["run", "when", "agent", "model", "status", "took", "tokens", "input"]
    assert all(len(line) <= 80 for line in lines), out
    [row] = [line for line in lines if run_id in line]  # the id whole
    assert "…" in row and " ok " in row and "an-agent-with-a-rather-long-name" not in row


def test_piped_logs_are_plain_and_unwrapped(halguru_cmd, subprocess_env, write_agent):
    folder = write_agent("name: an-agent-with-a-rather-long-name\nmodel: scripted\n")
    env = {k: v for k, v in subprocess_env.items() if k not in ("COLUMNS", "NO_COLOR")}
    run(halguru_cmd, env, "run", str(folder), LONG_INPUT)
    out = run(halguru_cmd, env, "logs").stdout
    assert "\x1b[" not in out
    header, row = out.splitlines()
    assert header.split() == ["run", "when", "agent", "model", "status", "took", "tokens", "input"]
    assert len(row) > 80  # one line per run, not wrapped at 80 columns
    assert "an-agent-with-a-rather-long-name" in row and "please summarise paragraph0" in row
    assert row.endswith(LONG_INPUT)  # the long input whole: neither wrapped nor cut
    assert len(run(halguru_cmd, {**env, "COLUMNS": "80"}, "logs").stdout.splitlines()[1]) <= 80


def test_logs_follow_prints_runs_as_they_finish(halguru_cmd, subprocess_env, write_agent):
    folder = write_agent(ECHO_AGENT)
    run(halguru_cmd, subprocess_env, "run", str(folder), "long before")
    run(halguru_cmd, subprocess_env, "run", str(folder), "before following")
    follower = subprocess.Popen([*halguru_cmd, "logs", "-f", "-n", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=subprocess_env, start_new_session=True)
    follower.seen = ""
    try:
        assert "before following" in _read_until(follower, "before following")
        run(halguru_cmd, subprocess_env, "run", str(folder), "while following")
        line = _read_until(follower, "while following")
        assert re.search(r"run_\w+ .* echoer .* ok .* while following", line), line
        assert follower.poll() is None  # still following
        # the run -n left out is not news: it was printed as if it had just finished
        assert "long before" not in follower.everything  # type: ignore[attr-defined]
    finally:
        os.killpg(follower.pid, 2)  # Ctrl-C
        follower.wait(10)
    assert follower.returncode == 0
    assert "Traceback" not in follower.stderr.read()


def _read_until(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    """The first line of ``proc``'s output (read straight from the pipe, unbuffered) that holds ``text``."""
    import selectors

    fd = proc.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.seen.splitlines(keepends=True):
            if text in line and line.endswith("\n"):
                proc.seen = proc.seen[proc.seen.index(line) + len(line):]
                return line
        if selector.select(timeout=0.5):
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                break
            proc.seen += chunk
            proc.everything = getattr(proc, "everything", "") + chunk  # type: ignore[attr-defined]
    raise AssertionError(f"{text!r} never came; got {proc.seen!r}")


# --- approvals ---------------------------------------------------------------------------------------

MAILER_TOOLS = '''\
from pathlib import Path
from halguru import tool


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    with open(Path(__file__).parent / "sent.log", "a") as f:
        f.write(f"{to}: {body}\\n")
    return f"sent to {to}"
'''


def test_edited_arguments_are_checked_before_the_approval_is_used(halguru_cmd, subprocess_env, write_agent,
                                                                  tmp_path):
    script = tmp_path / "script.yaml"
    folder = write_agent(f"name: mailer\nmodel: 'scripted:{script}'\ntools: [send_email]\n"
                         "approvals: [send_email]\n", MAILER_TOOLS, name="mailer")
    script.write_text(json.dumps([{"tool_calls": [{"id": "c1", "name": "send_email",
                                                   "arguments": {"to": "ann@example.com", "body": "hi"}}]}]))
    paused = run(halguru_cmd, subprocess_env, "run", str(folder), "mail ann", "--json", code=3)
    run_id = json.loads(paused.stdout.splitlines()[-1])["run_id"]

    bad = run(halguru_cmd, subprocess_env, "runs", "approve", run_id, "--edit-args", '{"to": "bob@example.com"}',
              code=1)
    assert bad.stderr.strip().splitlines() == [
        f"Error: --edit-args: invalid arguments for send_email: body: Field required; run {run_id} is still "
        "waiting for approval"]
    assert json.loads(run(halguru_cmd, subprocess_env, "runs", "pending", "--json").stdout)[0]["run_id"] == run_id
    assert not (folder / "sent.log").exists()

    script.write_text(json.dumps(["Mail sent."]))
    done = run(halguru_cmd, subprocess_env, "runs", "approve", run_id, "--edit-args",
               '{"to": "bob@example.com", "body": "hello"}')
    assert done.stdout.strip() == "Mail sent."
    assert (folder / "sent.log").read_text() == "bob@example.com: hello\n"


@pytest.mark.parametrize("command", [("models", "list"), ("plugins",), ("tools",)])
def test_piped_listings_are_one_line_per_row(halguru_cmd, subprocess_env, command):
    env = {k: v for k, v in subprocess_env.items() if k not in ("COLUMNS", "NO_COLOR")}
    lines = run(halguru_cmd, env, *command).stdout.splitlines()
    assert "\x1b[" not in "".join(lines)
    assert not [line for line in lines if line.startswith(" ")], lines  # no wrapped continuation lines
    first = {"models": "smollm2", "plugins": "halguru.models.plugin", "tools": "calculator"}[command[0]]
    [row] = [line for line in lines if line.startswith(first)]
    assert len(row.split()) >= 3, row  # every column on the row


LONG_TOOLS = '''\
from halguru import tool


@tool
def lookup_the_order(order_id: str) -> str:
    """Look an order up by its id in the shop's database and say where it is, when it left and when it comes."""
    return "shipped"
'''
LONG_TEST = """\
tests:
  - name: looks the order up in the shop database when a customer asks where it is
    turns:
      - user: Where is my order?
        expect:
          max_tokens: 300
"""


def test_piped_tables_keep_long_values_whole_on_one_line(halguru_cmd, subprocess_env, write_agent):
    """Piped, every table (and the event tree) is one line per row with nothing cut: Rich wrapped at 80
    columns, and the listings cut long cells with "…"."""
    env = {k: v for k, v in subprocess_env.items() if k not in ("COLUMNS", "NO_COLOR")}
    folder = write_agent("name: an-agent-with-a-rather-long-name\nmodel: scripted\ntools: [lookup_the_order]\n",
                         LONG_TOOLS)
    (folder / "tests").mkdir()
    (folder / "tests" / "test_orders.yaml").write_text(LONG_TEST)
    description = ("Look an order up by its id in the shop's database and say where it is, when it left and "
                   "when it comes.")
    test_name = "test_orders::looks the order up in the shop database when a customer asks where it is"
    long_model = "scripted:" + "a-scripted-model-with-a-name-long-enough-to-pass-eighty-columns" * 2

    def row(out: str, start: str) -> str:
        assert "\x1b[" not in out and "…" not in out, out
        [line] = [line for line in out.splitlines() if line.strip().startswith(start)]
        return line

    assert description in row(run(halguru_cmd, env, "tools", str(folder)).stdout, "lookup_the_order")
    assert row(run(halguru_cmd, env, "models", "list").stdout, "smollm2").rstrip().endswith(".gguf)")
    from halguru.scaffold import list_templates

    templates = run(halguru_cmd, env, "templates").stdout
    for t in list_templates():
        assert t.description in row(templates, t.name)
    assert "max_tokens" in row(run(halguru_cmd, env, "test", str(folder), "--live").stdout, test_name)
    evaluated = run(halguru_cmd, env, "eval", str(folder), "--models", f"scripted,{long_model}", code=1).stdout
    assert "error" in row(evaluated, long_model)
    chat = subprocess.run([*halguru_cmd, "chat", str(folder)], input="/tools\n/exit\n", capture_output=True,
                          text=True, env=env, timeout=60, start_new_session=True)
    assert "order_id" in row(chat.stdout, "lookup_the_order") and description in chat.stdout
    run_id = json.loads(run(halguru_cmd, env, "logs", "--all", "--json").stdout)[0]["id"]
    header = row(run(halguru_cmd, env, "logs", "show", run_id).stdout, run_id)
    assert len(header) > 80 and header.endswith(" tokens"), header


def test_piped_rich_tables_have_no_edge_padding(halguru_cmd, subprocess_env, write_agent):
    """Piped, the tables of `test`, `eval`, `templates`, `kb list` and chat's /tools start at column 0 and
    end at their last character, as `logs` does: Rich put a space before each row and padded every row with
    spaces up to the widest one (a long "why" made each line ~200 columns)."""
    env = {k: v for k, v in subprocess_env.items() if k not in ("COLUMNS", "NO_COLOR")}
    folder = write_agent("name: orders\nmodel: scripted\ntools: [lookup_the_order]\n", LONG_TOOLS)
    (folder / "tests").mkdir()
    (folder / "tests" / "test_orders.yaml").write_text(LONG_TEST)
    run(halguru_cmd, env, "kb", "create", "notes")
    chat = subprocess.run([*halguru_cmd, "chat", str(folder)], input="/tools\n/exit\n", capture_output=True,
                          text=True, env=env, timeout=60, start_new_session=True)
    outputs = {"templates": run(halguru_cmd, env, "templates").stdout,
               "kb list": run(halguru_cmd, env, "kb", "list").stdout,
               "test": run(halguru_cmd, env, "test", str(folder), "--live").stdout,
               "eval": run(halguru_cmd, env, "eval", str(folder), "--models", "scripted").stdout,
               "chat": chat.stdout}
    for command, out in outputs.items():
        lines = [line.removeprefix("you> ") for line in out.splitlines()]  # chat's prompt precedes its output
        table = [line for line in lines if line.split()[:1] in (["template"], ["name"], ["test"],
                                                                           ["model"], ["tool"])]
        assert table, (command, out)
        for line in table:
            assert not line.startswith(" ") and line == line.rstrip(), (command, repr(line))
        assert all(line == line.rstrip() for line in lines), (command, out)


def test_config_show_warns_of_unknown_keys(halguru_cmd, subprocess_env, halguru_home):
    halguru_home.mkdir(parents=True, exist_ok=True)
    (halguru_home / "config.toml").write_text("llama_n_ctx = 2048\nllama_ctx = 8192\n")
    proc = run(halguru_cmd, subprocess_env, "config", "show")
    assert proc.stderr.strip() == (f"warning: {halguru_home / 'config.toml'}: unknown setting 'llama_ctx' is ignored "
                                   "(did you mean 'llama_n_ctx'?)")
    ran = run(halguru_cmd, subprocess_env, "models", "list")  # every command that reads the settings says it
    assert "unknown setting 'llama_ctx' is ignored" in ran.stderr
    assert re.search(r"^llama_n_ctx\s+2048\s", proc.stdout, re.M)


def test_runs_list_lines_up_the_agents_under_a_header_and_keeps_inputs_whole(cli, write_agent):
    """Piped, a long input was cut at 50 characters; there was no header row."""
    long = "hello from a-much-longer-agent-name, " + "with a question that goes on " * 4
    for name, text in (("a", "hello from a"), ("a-much-longer-agent-name", long)):
        cli("run", str(write_agent(f"name: {name}\nmodel: scripted\n", name=name)), text)
    lines = cli("runs", "list").stdout.splitlines()
    assert lines[0].split() == ["run", "status", "agent", "input", "state"]
    assert len(lines) == 3 and len({line.index(column) for line, column in zip(lines, ("input", "hello", "hello"),
                                                                               strict=True)}) == 1, lines
    assert lines[1].rstrip().endswith(long.strip())


def test_runs_list_names_the_job_that_started_a_run(cli):
    """A job's runs showed as any other: an operator could not tell a worker's run from a user's."""
    from halguru.store import open_store

    store = open_store()
    job, _ = store.enqueue_job("run", "echo", {"input": "bill me"})
    for run_id, job_id in (("run_job01", job["id"]), ("run_user1", None)):
        store.start_run(run_id, f"conv_{run_id}", "echo", "scripted", "bill me", job_id=job_id)
        store.finish_run(run_id, f"conv_{run_id}", {"status": "ok", "output": "", "duration_ms": 0, "steps": 0,
                                                    "prompt_tokens": 0, "completion_tokens": 0}, [], [])
    lines = cli("runs", "list").stdout.splitlines()
    assert lines[0].split() == ["run", "status", "agent", "job", "input", "state"]
    assert sorted(line.split()[:5] for line in lines[1:]) == [["run_job01", "ok", "echo", job["id"], "bill"],
                                                             ["run_user1", "ok", "echo", "-", "bill"]]
    assert {r["id"]: r["job_id"] for r in json.loads(cli("runs", "list", "--json").stdout)} == \
        {"run_job01": job["id"], "run_user1": None}


@pytest.mark.parametrize(("key", "value", "says"), [
    ("database_url", "notaurl", "not a PostgreSQL URL"),  # saved before, then every command failed
    ("knowledge_path", "", "give a path"),  # saved as "." before: wherever the command ran
    ("db_path", " ", "give a path"),
    ("run_lease", "inf", "less than or equal to 86400"),  # accepted before, then a thread traceback per run
    ("run_lease", "1e12", "less than or equal to 86400"),
])
def test_config_set_refuses_what_would_break_later(cli_error, halguru_home, key: str, value: str,
                                                  says: str) -> None:
    line = cli_error("config", "set", key, value)
    assert says in line and "Value error" not in line, line
    config = halguru_home / "config.toml"
    assert not config.exists() or key not in config.read_text(), "nothing is saved"


def test_an_empty_halguru_home_is_unset_for_config_and_store_alike(halguru_cmd, subprocess_env, tmp_path) -> None:
    """`HALGURU_HOME= halguru …` read the config from ~/.halguru but wrote halguru.db into the current folder."""
    import subprocess

    (tmp_path / "ag").mkdir()
    (tmp_path / "ag" / "agent.yaml").write_text("name: ag\nmodel: scripted\n")
    fake_home = tmp_path / "user"
    env = {**subprocess_env, "HALGURU_HOME": "", "HOME": str(fake_home)}
    done = subprocess.run([*halguru_cmd, "run", "ag", "hi"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "halguru.db").exists() and (fake_home / ".halguru" / "halguru.db").is_file()


def test_a_store_under_a_file_is_one_line_naming_it(cli_error, write_agent, tmp_path) -> None:
    folder = write_agent("name: ag\nmodel: scripted\n")
    line = cli_error("run", str(folder), "hi", env={"HALGURU_DB_PATH": "/dev/null/x/halguru.db"})
    assert line == "Error: cannot open the trace store /dev/null/x/halguru.db: /dev/null/x is not a folder", line


def test_logs_conversation_prints_the_transcript(cli, cli_error, write_agent):
    """There was no way to read a conversation's messages outside chat's /history."""
    import json as json_

    folder = write_agent("name: calc\nmodel: scripted:s.yaml\ntools: [calculator]\n", name="calc")
    (folder / "s.yaml").write_text("- tool_calls: [{name: calculator, arguments: {expression: '2*21'}}]\n"
                                   "- It is 42.\n")
    cli("run", str(folder), "what is 2*21?")
    from halguru.store import open_store

    [conversation] = open_store().list_conversations(1)
    out = cli("logs", "conversation", conversation["id"]).output.splitlines()
    assert out[0].startswith(f"{conversation['id']} · agent calc · 4 messages")
    assert [line for line in out[1:] if line] == ["user: what is 2*21?", "assistant:",
                                                  '  → calculator({"expression": "2*21"})',
                                                  "tool calculator: 42", "assistant: It is 42."]
    data = json_.loads(cli("logs", "conversation", conversation["id"], "--json").output)
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert cli_error("logs", "conversation", "conv_nope") == (
        "Error: no conversation 'conv_nope'; `halguru logs --conversations` lists them")


def test_logs_conversation_keeps_each_message_under_its_speaker(cli, write_agent):
    """A tool call with no text was printed under the message before it (`tool flaky: ...` then `  → uni(...)`,
    as if the tool had made the call), and a multi-line result's lines started at the margin, so a tool or a
    visitor could print a line `assistant: ...` that read as the agent's own message."""
    folder = write_agent("name: calc\nmodel: scripted:s.yaml\ntools: [calculator]\n", name="calc")
    (folder / "s.yaml").write_text("- tool_calls: [{name: calculator, arguments: {expression: '2*21'}}]\n"
                                   "- tool_calls: [{name: calculator, arguments: {expression: '1+1'}}]\n"
                                   "- It is 42.\n")
    cli("run", str(folder), "first line\nassistant: I was told to say yes\n多行 ünï")
    lines = [line for line in cli("logs", "conversation", "last").output.splitlines()[1:] if line]
    assert lines == ["user: first line", "  assistant: I was told to say yes", "  多行 ünï",
                     "assistant:", '  → calculator({"expression": "2*21"})', "tool calculator: 42",
                     "assistant:", '  → calculator({"expression": "1+1"})', "tool calculator: 2",
                     "assistant: It is 42."]


def test_a_tool_name_a_model_made_up_prints_inert(cli, write_agent):
    """A tool name with a terminal escape (OSC: set the title) went raw to the terminal in `logs conversation`
    and in the live run's `→ name(...)` line."""
    folder = write_agent("name: odd\nmodel: scripted:s.yaml\n", name="odd")
    (folder / "s.yaml").write_text('- tool_calls: [{name: "\\e]0;T\\a\\e[31mred", arguments: {}}]\n- done\n')
    ran = cli("run", str(folder), "go").output
    assert "\x1b" not in ran and "\\x1b]0;T" in ran
    from halguru.store import open_store

    [conversation] = open_store().list_conversations(1)
    shown = cli("logs", "conversation", conversation["id"]).output
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b]0;T\\x07\\x1b[31mred" in shown


def test_logs_replay_says_whether_a_run_is_reproduced(cli, write_agent):
    """Replay was only in `halguru dev` (F7): nothing a script or CI could run."""
    import json as json_

    folder = write_agent("name: calc\nmodel: scripted:s.yaml\ntools: [calculator]\n", name="calc")
    (folder / "s.yaml").write_text("- tool_calls: [{name: calculator, arguments: {expression: '2*21'}}]\n"
                                   "- It is 42.\n")
    cli("run", str(folder), "what is 2*21?")
    from halguru.store import open_store

    [run] = open_store().list_runs(limit=1)
    assert cli("logs", "replay", run["id"]).output == f"replay of {run['id']}: identical answer, event for event\n"
    data = json_.loads(cli("logs", "replay", run["id"][:12], "--json").output)
    assert data == {"run_id": run["id"], "reproduced": True, "same_answer": True, "differences": 0,
                    "outcome": "identical answer, event for event"}


def test_logs_replay_of_an_approval_continuation_gives_each_call_its_own_result(cli, write_agent):
    """The approved call's result (recorded before the continuation's first model call) went to the next call:
    `calculator · saved groceries`, flagged as a bug."""
    import json as json_

    folder = write_agent("name: ap\nmodel: scripted:s1.yaml\ntools: [save_note, calculator]\napprovals: [save_note]\n",
                         "from halguru import tool\n\n@tool\ndef save_note(title: str) -> str:\n"
                         "    'Save a note.'\n    return f'saved {title}'\n", name="ap")
    (folder / "s1.yaml").write_text("- tool_calls: [{name: save_note, arguments: {title: groceries}}]\n")
    (folder / "s2.yaml").write_text('- tool_calls: [{name: calculator, arguments: {expression: "2+2"}}]\n'
                                    '- "done: 4"\n')
    cli("run", str(folder), "save a note then add", code=3)  # paused for the approval
    paused = json_.loads(cli("logs", "--agent", "ap", "--json").output)[0]["id"]
    (folder / "agent.yaml").write_text((folder / "agent.yaml").read_text().replace("s1.yaml", "s2.yaml"))
    cli("runs", "approve", paused)
    continued = json_.loads(cli("logs", "--agent", "ap", "--json").output)[0]
    assert continued["output"] == "done: 4"
    out = cli("logs", "replay", continued["id"]).output
    assert out.startswith(f"replay of {continued['id']}: identical answer"), out
    assert "no known reason" not in out and "saved groceries" not in out.split("Event trees")[0], out
    assert "+tool_result calculator" not in out


def test_logs_replay_of_parallel_workflow_steps_differs_only_by_its_checkpoints(cli, write_agent):
    """The README's triage workflow: `tech` was skipped while `order`'s tool ran; replayed, the tool's result comes
    at once and the skip after it. That is scheduling, and it was reported as "a bug" (exit 1)."""
    import json as json_

    (write_agent("name: classifier\nmodel: scripted:c.yaml\n", name="classifier") / "c.yaml").write_text(
        "- '{\"category\": \"billing\", \"order_id\": 7}'\n")
    write_agent("name: tech\nmodel: scripted\n", name="tech")
    write_agent("name: writer\nmodel: scripted\n", name="writer")
    folder = write_agent(
        "name: triage\ntools: [lookup_order]\nworkflow:\n  steps:\n"
        "    - {id: classify, agent: ../classifier, output: {type: object, properties: {category: {enum: [billing, "
        "tech]}, order_id: {type: integer}}, required: [category, order_id]}}\n"
        "    - {id: billing, condition: \"steps.classify.output.category == 'billing'\"}\n"
        "    - {id: order, tool: lookup_order, when: '{{ steps.billing.output }}', "
        "args: {order_id: '{{ steps.classify.output.order_id }}'}}\n"
        "    - {id: tech, agent: ../tech, needs: [billing], when: not steps.billing.output}\n"
        "    - {id: reply, agent: ../writer, needs: [order, tech], input: 'Order: {{ steps.order.output }}'}\n"
        "  output: '{{ steps.reply.output }}'\n  max_parallel: 4\n",
        "import time\nfrom halguru import tool\n\n@tool\ndef lookup_order(order_id: int) -> dict:\n"
        "    'Look up an order.'\n    time.sleep(0.3)\n    return {'order_id': order_id, 'status': 'refunded'}\n",
        name="triage")
    cli("run", str(folder), "Where is my refund for order 7?")
    run = json_.loads(cli("logs", "--agent", "triage", "--json").output)[0]
    assert run["status"] == "ok"
    out = cli("logs", "replay", run["id"]).output
    assert out.startswith(f"replay of {run['id']}: identical answer, 5 event(s) differ\n"), out
    assert "checkpoint(s) missing" in out and "no known reason" not in out, out


def test_logs_replay_of_a_cancelled_run_says_only_why_it_cannot_be_replayed(cli, write_agent):
    """It printed the reason, then a diff of what the replay did past the cut ("unknown tool 'slow'",
    "max_steps", "run_finished limited") as if those were findings."""
    import asyncio
    import contextlib

    from halguru.agents.runtime import run
    from halguru.models.scripted import ScriptedModel
    from halguru.store import open_store

    folder = write_agent("name: tooly\nmodel: scripted\ntools: [slow]\n",
                         "import time\nfrom halguru import tool\n\n@tool\ndef slow(seconds: float) -> str:\n"
                         "    'Wait.'\n    time.sleep(seconds)\n    return 'slept'\n", name="tooly")
    model = ScriptedModel([{"tool_calls": [{"name": "slow", "arguments": {"seconds": 5}}]}, "done"])

    async def cut() -> None:
        async for event in run(folder, "go", model=model):
            if event.type == "tool_call":
                raise asyncio.CancelledError  # as Ctrl-C while the tool runs

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(cut())
    [stored] = open_store().list_runs(limit=1)
    assert stored["status"] == "cancelled"
    out = cli("logs", "replay", stored["id"], code=1).output
    assert out == (f"replay of {stored['id']}: cannot be replayed: it was cancelled before it finished, and a replay "
                   "feeds back only recorded outputs: there are none past that point\n")


@pytest.mark.parametrize("unwritable", ["folder", "database"])
def test_a_home_this_user_cannot_write_is_one_line_naming_the_owner_and_the_fix(halguru_cmd, subprocess_env,
                                                                                unwritable):
    """A host folder mounted as the image's HALGURU_HOME, made by root: SQLite said only "unable to open database
    file". As root (who may write anything) the command runs as nobody, as the image's uid 1000 would."""
    import tempfile

    as_root = os.geteuid() == 0
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if as_root else []
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)  # the other user reaches what is inside
        home, agent = Path(top) / "home", Path(top) / "echo"
        home.mkdir()
        agent.mkdir()
        (agent / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
        env = {**subprocess_env, "HALGURU_HOME": str(home)}
        if unwritable == "database":  # a store made by another user in a folder anyone may write
            subprocess.run([*halguru_cmd, "logs"], env=env, check=True, capture_output=True, timeout=60)
            os.chmod(home, 0o777)
            os.chmod(home / "halguru.db", 0o444 if not as_root else 0o644)
        else:
            os.chmod(home, 0o755 if as_root else 0o555)
        done = subprocess.run([*user, *halguru_cmd, "run", str(agent), "Hi"], env=env, capture_output=True,
                              text=True, timeout=60)
        blamed = home if unwritable == "folder" else home / "halguru.db"
        uid = 65534 if as_root else os.geteuid()
        fix = f"chown -R 65534 {home} (on the host, for a mounted folder)" if as_root else f"chmod u+w {blamed}"
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr
        assert f": this user (uid {uid}) cannot write {blamed} (" in done.stderr
        assert done.stderr.endswith(f"): {fix}, or set HALGURU_HOME to a folder it can write\n"), done.stderr
        os.chmod(home, 0o755)  # removable again
