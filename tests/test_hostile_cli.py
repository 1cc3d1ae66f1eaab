"""A hostile user and a broken machine against the CLI: each is one line naming what is wrong, exit 1, no
traceback, nothing half-written."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from halguru.yamlfile import MAX_YAML_BYTES

AGENT = "name: a\nmodel: scripted\n"


def test_yaml_nested_thousands_deep_is_one_line(write_agent, cli_error):
    # PyYAML recurses once per level: a RecursionError traceback, for agent.yaml and tests files alike
    folder = write_agent(AGENT + "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert cli_error("validate", str(folder)).endswith("agent.yaml: invalid YAML: nested too deeply "
                                                       "(lists or mappings thousands of levels deep)")


def test_yaml_over_the_limit_is_refused_before_it_is_parsed(write_agent, cli_error):
    # a 50 MB agent.yaml took minutes to parse
    folder = write_agent(AGENT + "description: '" + "x" * (MAX_YAML_BYTES + 1) + "'\n")
    assert cli_error("validate", str(folder)).endswith("agent.yaml: 2 MB, over the 2 MB a YAML file here may be; "
                                                       "split it, or keep long texts in files of their own")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_yaml_that_is_a_pipe_or_a_device_is_refused(tmp_path: Path, kind: str, cli_error):
    # a FIFO blocked the read forever; /dev/zero never ended
    folder = tmp_path / "agent"
    folder.mkdir()
    if kind == "fifo":
        os.mkfifo(folder / "agent.yaml")
    else:
        (folder / "agent.yaml").symlink_to("/dev/zero")
    assert cli_error("validate", str(folder)).endswith("agent.yaml: not a regular file (a pipe, socket or device); "
                                                       "give a YAML file")


def _on_a_full_disk(disk: Path, halguru_cmd: list[str], env: dict[str, str], then: str,
                    before: str = "true") -> subprocess.CompletedProcess[str]:
    """Run the shell commands ``before``, then ``then`` once ``disk`` is full: a 2 MB tmpfs mounted on it in a
    private mount namespace (which needs root, as CI has); ``h`` in them is the CLI."""
    cli = " ".join(map(shlex.quote, halguru_cmd))
    script = (f"h() {{ {cli} \"$@\"; }}; mount -t tmpfs -o size=2m tmpfs {disk} && {before} && "
              f"(dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null; true) && {then}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "mount:" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_a_full_disk_is_one_line_and_the_run_is_not_recorded(tmp_path: Path, halguru_cmd, subprocess_env):
    """HALGURU_HOME on a full disk: `halguru run` was a sqlite3.OperationalError traceback ("database or disk is
    full")."""
    home = Path(subprocess_env["HALGURU_HOME"])
    home.mkdir(exist_ok=True)
    agent = tmp_path / "ag"
    agent.mkdir()
    (agent / "agent.yaml").write_text("name: ag\nmodel: scripted\n")
    (tmp_path / "long.txt").write_text("hello " * 100_000)
    done = _on_a_full_disk(home, halguru_cmd, subprocess_env, before="h logs >/dev/null",
                           then=f"h run {agent} - < {tmp_path}/long.txt; echo rc=$?; rm {home}/filler; h logs --json")
    assert "rc=1" in done.stdout, done.stdout
    assert done.stderr.strip() == (f"Error: the trace store {home.resolve()}/halguru.db cannot grow: the disk is full "
                                   "(database or disk is full); free some space (`halguru logs prune --older-than "
                                   "30d` removes old runs) and try again")
    assert done.stdout.split("rc=1")[1].strip() == "[]"  # no run half-recorded


def test_kb_create_on_a_full_disk_is_one_line_and_leaves_no_folder(halguru_cmd, subprocess_env):
    """`halguru kb create` on a full disk was LanceDB's RuntimeError traceback, and left the base's folder."""
    home = Path(subprocess_env["HALGURU_HOME"])
    home.mkdir(exist_ok=True)
    done = _on_a_full_disk(home, halguru_cmd, subprocess_env, before=f"mkdir {home}/knowledge",
                           then=f"h kb create full; echo rc=$?; ls {home}/knowledge")
    assert done.stdout.strip() == "rc=1", done.stdout  # and no folder "full" left in knowledge/
    assert done.stderr.startswith(f"Error: cannot create knowledge base 'full' in {home}/knowledge: "), done.stderr
    assert done.stderr.strip().endswith("No space left on device (os error 28); nothing was created"), done.stderr


def test_new_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, halguru_cmd, subprocess_env):
    """`halguru new` on a full disk printed shutil.Error's list of (source, copy, why) tuples as its error line."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = _on_a_full_disk(disk, halguru_cmd, subprocess_env, then=f"h new proj --dir {disk}; echo rc=$?; ls -A {disk}")
    assert done.stderr.strip() == f"Error: cannot create {disk}/proj: No space left on device; nothing was created"
    assert done.stdout.split() == ["rc=1", "filler"]  # no project, no staging folder


def test_export_to_a_pipe_writes_through_it_and_keeps_it(tmp_path: Path, write_agent, halguru_cmd, subprocess_env):
    """`halguru logs export RUN -o PIPE --force` (or -o /dev/stdout as root) renamed a file over the pipe or
    device: the reader got nothing and /dev/stdout became a regular file."""
    import stat
    import threading

    folder = write_agent(AGENT)
    subprocess.run([*halguru_cmd, "run", str(folder), "hello"], env=subprocess_env, check=True, capture_output=True,
                   timeout=60)
    runs = subprocess.run([*halguru_cmd, "logs", "--json"], env=subprocess_env, check=True, capture_output=True,
                          timeout=60)
    run_id = json.loads(runs.stdout)[0]["id"]
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()), daemon=True)
    reader.start()
    done = subprocess.run([*halguru_cmd, "logs", "export", run_id, "-o", str(pipe), "--force"], env=subprocess_env,
                          capture_output=True, text=True, timeout=60)
    reader.join(10)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert got and "hello" in got[0], got


def test_schema_output_on_a_full_disk_leaves_no_empty_file(tmp_path: Path, halguru_cmd, subprocess_env):
    """`halguru schema -o FILE` on a full disk said so, but left FILE empty (or an older schema cut short)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = _on_a_full_disk(disk, halguru_cmd, subprocess_env,
                           then=f"h schema -o {disk}/agent.schema.json; echo rc=$?; ls -A {disk}")
    assert done.stderr.strip() == f"Error: {disk}/agent.schema.json: No space left on device"
    assert done.stdout.split() == ["rc=1", "filler"]


def test_a_limit_past_64_bits_lists_every_row(write_agent, halguru_cmd, subprocess_env):
    """`halguru logs -n 99999999999999999999` (jobs list, audit list the same) was an OverflowError traceback."""
    folder = write_agent(AGENT)
    subprocess.run([*halguru_cmd, "run", str(folder), "hello"], env=subprocess_env, check=True, capture_output=True,
                   timeout=60)
    for args in (["logs", "--json"], ["jobs", "list", "--json"], ["logs", "--conversations", "--json"]):
        done = subprocess.run([*halguru_cmd, *args, "-n", "9" * 20], env=subprocess_env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)) == (0 if "jobs" in args else 1)


def test_the_store_reads_a_limit_past_64_bits_as_every_row(store):
    # PostgreSQL said "bigint out of range"
    store.create_conversation("c1", "a")
    assert [c["id"] for c in store.list_conversations(limit=10**20)] == ["c1"]
    assert store.list_runs(limit=10**20) == []


def test_repeat_past_the_limit_is_refused_at_once(cli_error):
    # the plan listed every attempt up front: 10**20 of them filled the memory and never ran one test
    folder = Path(__file__).parents[1] / "agents-templates" / "basic"
    assert cli_error("test", str(folder), "--repeat", "9" * 20) == f"Error: --repeat {'9' * 20}: at most 10000 runs " \
                                                                    "of each test"


def test_closed_standard_streams_are_said_not_tracebacks(write_agent, halguru_cmd, subprocess_env):
    """`halguru logs >&-`, `halguru run A - <&-`, `halguru chat A <&-`: Python's None streams were
    AttributeError / "input(): lost sys.stdin" tracebacks; a closed stdout now stops before the run is made."""
    folder = write_agent(AGENT)

    def shell(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", f'"$@" {redirect}', "sh", *halguru_cmd, *args], env=subprocess_env,
                              capture_output=True, text=True, timeout=60)

    closed = shell(">&-", "run", str(folder), "hello")
    assert (closed.returncode, closed.stderr) == (1, "Error: standard output is closed (>&-): send it to a file or "
                                                     "to /dev/null instead\n")
    no_stdin = shell("<&-", "run", str(folder), "-")
    assert (no_stdin.returncode, no_stdin.stderr) == (1, "Error: no input on stdin ('-' reads the message from "
                                                         "stdin)\n")
    chat = shell("<&-", "chat", str(folder))
    assert chat.returncode == 0 and "Traceback" not in chat.stderr, chat.stderr
    assert shell("2>&-", "logs", "show", "nosuch").returncode == 1
    assert json.loads(shell("", "logs", "--json").stdout) == []  # the run with stdout closed was not made


def test_a_non_utf8_terminal_gets_escapes_not_a_traceback(write_agent, halguru_cmd, subprocess_env):
    """An ASCII or latin-1 locale (here PYTHONIOENCODING=ascii): printing a run whose input or answer is not ASCII
    was a UnicodeEncodeError traceback, in `halguru logs` and in `halguru run` itself."""
    folder = write_agent(AGENT)
    env = {**subprocess_env, "PYTHONIOENCODING": "ascii"}
    ran = subprocess.run([*halguru_cmd, "run", str(folder), "héllo 名前"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "h\\xe9llo \\u540d\\u524d" in ran.stdout  # the scripted model echoes the input
    logs = subprocess.run([*halguru_cmd, "logs"], env=env, capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0 and "h\\xe9llo" in logs.stdout, logs.stderr


def test_dev_without_a_terminal_says_so(write_agent, cli_error):
    # Textual drew its screens into the pipe and never ended
    assert cli_error("dev", str(write_agent(AGENT))) == (
        "Error: halguru dev needs a terminal (its input or output is a pipe or a file): run it in one, or script the "
        "agent with `halguru run` or `halguru chat`")


def test_an_argument_that_is_not_utf8_finds_nothing(halguru_cmd, subprocess_env, cli_error):
    """`halguru logs show $'\\xff'` (`logs -c`, `jobs show` the same): Python holds the byte as a lone surrogate,
    and binding it was a UnicodeEncodeError traceback."""
    assert cli_error("logs", "show", "\udcff").startswith("Error: no run '\\udcff' in ")
    # no such conversation: one line (since `logs -c` says so of an unknown id rather than "No runs match.")
    assert cli_error("logs", "--json", "-c", "\udcff").startswith("Error: no conversation '\\udcff'")


def test_the_store_finds_nothing_for_text_that_is_not_utf8(store):
    # PostgreSQL's driver refused it as SQLite's did
    store.create_conversation("c1", "é")
    assert store.list_conversations(agent="\udcff") == []
    assert [c["id"] for c in store.list_conversations(agent="é")] == ["c1"]


def test_a_base_with_broken_metadata_can_be_dropped(cli, cli_error, halguru_home: Path):
    """meta.json cut short: every command said it was unreadable, and `kb drop` too, so only rm -rf removed it."""
    cli("kb", "create", "docs", "-e", "fast")
    (halguru_home / "knowledge" / "docs" / "meta.json").write_text("{bad")
    assert cli_error("kb", "search", "docs", "q").endswith(
        "meta.json: Expecting property name enclosed in double quotes: line 1 column 2 (char 1); restore the file, "
        "or drop the base with `halguru kb drop docs`")
    assert "Dropped knowledge base docs." in cli("kb", "drop", "docs", "--yes").output
    assert not (halguru_home / "knowledge" / "docs").exists()


def test_kb_show_of_a_base_whose_data_files_were_deleted_is_one_line(cli, cli_error, halguru_home: Path,
                                                                      tmp_path: Path):
    # LanceDB's RuntimeError ("Not found: ...lance") was a traceback in `kb show`; `kb list` said it twice over
    (tmp_path / "a.md").write_text("# Coffee\n\nEspresso is strong coffee.\n")
    cli("kb", "create", "docs", "-e", "fast")
    cli("kb", "ingest", "docs", str(tmp_path / "a.md"))
    import shutil

    shutil.rmtree(halguru_home / "knowledge" / "docs" / "chunks.lance" / "data")
    line = cli_error("kb", "show", "docs")
    assert line.startswith("Error: knowledge base 'docs' cannot be read (Not found: "), line  # the missing file
    assert "Wrapped error" not in line and "lance error" not in line and ".cargo" not in line
    assert line.endswith("drop it with `halguru kb drop docs` and ingest its files again")
    listed = cli("kb", "list").output
    assert listed.count("cannot be read") == 1, listed


def test_a_halguru_home_that_is_a_file_is_said_so(tmp_path: Path, cli_error):
    home = tmp_path / "home"
    home.write_text("")
    assert cli_error("logs", env={"HALGURU_HOME": str(home)}) == (
        f"Error: HALGURU_HOME {home} is a file, not a folder: set HALGURU_HOME to a folder (or unset it for "
        "~/.halguru)")


def test_a_damaged_or_locked_store_says_what_to_do(cli, cli_error, halguru_home: Path):
    """SQLite's own words alone ("database disk image is malformed", "database is locked") left the user guessing."""
    import sqlite3

    cli("logs")  # the store is made
    db = halguru_home / "halguru.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a sqlite3 shell left in a transaction
    holder.execute("INSERT INTO migrations VALUES ('held', 1)")
    try:
        assert cli_error("logs").endswith(": database is locked: another process has held its write lock for over "
                                          "10 s (a halguru command still running, or a sqlite3 shell in a "
                                          "transaction); end it, or try again when it is done")
    finally:
        holder.close()
    for leftover in ("-wal", "-shm"):
        db.with_name(db.name + leftover).unlink(missing_ok=True)
    db.write_bytes(b"not a database, a text file saved over it\n" * 200)
    assert cli_error("logs") == (f"Error: cannot open the trace store {db}: file is not a database: the file is "
                                 "damaged or not a halguru store; restore it from a backup, or move it aside (with "
                                 "its -wal and -shm files) and halguru starts a new, empty one")


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path: Path, halguru_cmd, subprocess_env):
    """`kill PID` (or `timeout`) ended `halguru run` at once: the run read 'running' until its lease ran out, its
    partial answer was lost. Now it is stored cancelled, as on Ctrl-C, and the exit status is 130."""
    import signal
    import time

    agent = tmp_path / "slow"
    agent.mkdir()
    (agent / "script.yaml").write_text('- {text: "one two three four five", token_delay: 2}\n')
    (agent / "agent.yaml").write_text(f"name: slow\nmodel: scripted:{agent / 'script.yaml'}\n")
    proc = subprocess.Popen([*halguru_cmd, "run", str(agent), "hi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                                            signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(3) == "one"  # the answer has begun
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Stopped. The partial answer is stored" in err and "Traceback" not in err
    runs = subprocess.run([*halguru_cmd, "logs", "--json"], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert [r["status"] for r in json.loads(runs.stdout)] == ["cancelled"]


def test_models_add_refuses_a_context_below_256_tokens(cli):
    # `--n-ctx -5` was stored, and every run on the model failed with "could not create a context of 1 × -5 tokens;
    # lower HALGURU_LLAMA_N_CTX"
    from halguru.models.registry import bundled_gguf_path

    result = cli("models", "add", "tiny", "--gguf", str(bundled_gguf_path()), "--n-ctx", "-5", code=2)
    assert "Invalid value for '--n-ctx': Input should be greater than or equal to 256" in result.output
    assert "tiny" not in cli("models", "list").output


def test_sigterm_ends_a_chat_not_only_its_answer(tmp_path: Path, halguru_cmd, subprocess_env):
    # SIGTERM as Ctrl-C stopped the answer and the chat read its next message: `timeout` could not end it
    import signal

    agent = tmp_path / "slow"
    agent.mkdir()
    (agent / "script.yaml").write_text('- {text: "one two three four five", token_delay: 2}\n')
    (agent / "agent.yaml").write_text(f"name: slow\nmodel: scripted:{agent / 'script.yaml'}\n")
    proc = subprocess.Popen([*halguru_cmd, "chat", str(agent)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("hi\nagain\nmore\n")
        proc.stdin.flush()
        seen = ""
        while not seen.endswith("one"):  # the answer has begun
            seen += proc.stdout.read(1)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    runs = subprocess.run([*halguru_cmd, "logs", "--json"], env=subprocess_env, capture_output=True, text=True,
                          timeout=60)
    assert [(r["input"], r["status"]) for r in json.loads(runs.stdout)] == [("hi", "cancelled")]


HANGS_ON_STOP = '''
import sys, time
from halguru.cli import app
app.STOP_GRACE = float(sys.argv[1])
app._terminate_as_interrupt()
try:
    print("ready", flush=True)
    time.sleep(600)
except KeyboardInterrupt:  # a stop that hangs: a model call that never returns
    print("stopping", flush=True)
    while True:
        try:
            time.sleep(600)
        except KeyboardInterrupt:
            pass
'''


def _hanging(grace: float, subprocess_env) -> subprocess.Popen[str]:
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HANGS_ON_STOP, str(grace)], stdout=subprocess.PIPE, text=True,
                            env=subprocess_env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_stop_that_hangs_ends_at_a_second_sigterm_or_after_the_grace(subprocess_env):
    # SIGTERM as Ctrl-C waits for the command to store what it cut; a stop that never finished (seen once: a run
    # hung 12 minutes after `timeout`'s SIGTERM) kept the process, which SIGTERM used to end at once
    proc = _hanging(600, subprocess_env)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None and proc.stdout.readline() == "stopping\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()
    proc = _hanging(1.5, subprocess_env)
    try:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert 1.4 < time.monotonic() - started < 8
    finally:
        proc.kill()
