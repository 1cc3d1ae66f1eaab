"""Killing `halguru run` mid-answer: the store stays readable and what was stored stays intact."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from halguru.config import get_settings
from halguru.store import open_store

WORDS = [f"word{i}" for i in range(200)]
SLOW_TEXT = " ".join(WORDS)  # 200 pieces at 0.05s: ten seconds of streaming


def write_slow_script(folder: Path) -> Path:
    script = folder / "slow-reply.yaml"
    script.write_text(f'- {{text: "{SLOW_TEXT}", token_delay: 0.05}}\n', encoding="utf-8")
    return script


def default_sigint() -> None:
    """A test runner started in the background may ignore SIGINT; the CLI under test must not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(cmd: list[str], *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start_streaming(argv: list[str], env: dict[str, str], min_words: int = 5) -> tuple[subprocess.Popen, bytes]:
    """Start a run and return once it has printed ``min_words`` words of its answer."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=default_sigint)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    while len(seen.split()) < min_words:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the run never streamed its answer; stdout={seen!r} stderr={err!r}")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 1.0))
        if ready:
            seen += os.read(proc.stdout.fileno(), 4096)
    return proc, seen


def first_turn(cmd: list[str], agent: Path, env: dict[str, str]) -> str:
    done = cli(cmd, "run", "--json", str(agent), "remember the blue door", env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["status"] == "ok"
    return events[0]["conversation_id"]


def test_sigkill_mid_run_leaves_store_readable_and_history_intact(write_agent, halguru_cmd, subprocess_env,
                                                                   tmp_path):
    agent = write_agent("name: crashy\nmodel: scripted\n")
    conversation = first_turn(halguru_cmd, agent, subprocess_env)
    script = write_slow_script(tmp_path)

    lease = 2.0  # a run is alive while its process renews its lease; this one's passes 2 s after the kill
    proc, streamed = start_streaming(
        [*halguru_cmd, "run", str(agent), "tell me a long story", "-c", conversation,
         "-m", f"scripted:{script}"], {**subprocess_env, "HALGURU_RUN_LEASE": str(lease)})
    assert streamed.decode().split()[0] == "word0"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(lease + 0.5)

    # The earlier conversation is intact and nothing half-written was added to it.
    store = open_store()
    messages = store.get_messages(conversation)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "remember the blue door"),
        ("assistant", "You said: remember the blue door"),
    ]
    runs = {r["input"]: r for r in store.list_runs(conversation_id=conversation)}
    assert runs["remember the blue door"]["status"] == "ok"
    killed = runs["tell me a long story"]
    assert killed["status"] == "interrupted"

    # The CLI sees the same thing.
    logs = cli(halguru_cmd, "logs", "--json", env=subprocess_env)
    assert logs.returncode == 0, logs.stderr
    by_id = {r["id"]: r for r in json.loads(logs.stdout)}
    assert by_id[killed["id"]]["status"] == "interrupted"
    assert by_id[runs["remember the blue door"]["id"]]["status"] == "ok"
    table = cli(halguru_cmd, "logs", env=subprocess_env)
    assert table.returncode == 0, table.stderr
    assert "interrupted" in table.stdout
    shown = cli(halguru_cmd, "logs", "show", killed["id"], env=subprocess_env)
    assert shown.returncode == 0, shown.stderr
    assert "interrupted" in shown.stdout
    assert "tell me a long story" in shown.stdout
    assert "Traceback" not in shown.stderr

    if store.location.startswith("postgresql://"):
        return  # the SQLite file's own check; PostgreSQL's transactions are whole or absent by themselves
    db = sqlite3.connect(get_settings().database)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()

    # The conversation goes on after the crash.
    after = cli(halguru_cmd, "run", str(agent), "still there?", "-c", conversation, env=subprocess_env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "You said: still there?"
    assert [m.content for m in store.get_messages(conversation)][-2:] == ["still there?", "You said: still there?"]
    assert len(store.get_messages(conversation)) == 4


def test_ctrl_c_during_run_exits_130_and_keeps_the_partial_answer(write_agent, halguru_cmd, subprocess_env,
                                                                  tmp_path):
    script = write_slow_script(tmp_path)
    agent = write_agent(f"name: slowpoke\nmodel: scripted:{script}\n")

    proc, streamed = start_streaming([*halguru_cmd, "run", str(agent), "tell me a long story"], subprocess_env)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    stdout, stderr = (streamed + out).decode(), err.decode()

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Stopped" in stderr
    printed = stdout.strip()
    assert printed.startswith("word0 word1")
    assert printed != SLOW_TEXT, "the answer ran to the end: Ctrl-C did not stop it"

    store = open_store()
    (run,) = store.list_runs()
    assert run["status"] == "cancelled"
    assert run["output"].strip() == printed
    messages = store.get_messages(run["conversation_id"])
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "tell me a long story"
    assert messages[1].content.strip() == printed
    assert SLOW_TEXT.startswith(messages[1].content)

    logs = cli(halguru_cmd, "logs", "--json", env=subprocess_env)
    assert json.loads(logs.stdout)[0]["status"] == "cancelled"
