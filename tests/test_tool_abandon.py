"""A slow synchronous tool never holds the process: Ctrl-C and a tool timeout exit promptly (real processes)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import yaml

SLOW_TOOLS = '''\
import time
from pathlib import Path
from halguru import tool


@tool(timeout={timeout})
def slow(seconds: int) -> str:
    """Wait a while."""
    (Path(__file__).parent / "started").write_text("yes")
    time.sleep(seconds)
    (Path(__file__).parent / "finished").write_text("yes")
    return "done"
'''


def project(write_agent, tmp_path: Path, timeout: float) -> Path:
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": "slow", "arguments": {"seconds": 30}}]},
                                      "Gave up waiting."]))
    return write_agent(f"name: waiter\nmodel: scripted:{script}\ntools: [slow]\n",
                       SLOW_TOOLS.format(timeout=timeout))


def wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_ctrl_c_during_a_slow_tool_exits_at_once(write_agent, tmp_path, halguru_cmd, subprocess_env):
    folder = project(write_agent, tmp_path, timeout=60)
    proc = subprocess.Popen([*halguru_cmd, "run", str(folder), "wait"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env)
    try:
        wait_for(folder / "started")
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert took < 5, f"the process waited {took:.1f}s for the tool"
    assert "Stopped." in err and "Traceback" not in err
    assert "The tool slow was still running: its thread is abandoned" in err
    assert not (folder / "finished").exists()
    from halguru.store import open_store

    [run] = open_store().list_runs()
    assert run["status"] == "cancelled"
    assert run["error"] == ("cancelled by the user while slow ran; its thread was abandoned and may run on until "
                            "the process exits")  # the trace says so too


def test_a_timed_out_tool_does_not_keep_the_process_alive(write_agent, tmp_path, halguru_cmd, subprocess_env):
    folder = project(write_agent, tmp_path, timeout=1)
    started = time.monotonic()
    proc = subprocess.run([*halguru_cmd, "run", "--json", str(folder), "wait"], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert took < 15, f"the process waited {took:.1f}s for the tool"
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    [error] = [e for e in events if e["type"] == "error"]
    assert "slow timed out after 1s" in error["message"] and "thread was abandoned" in error["message"]
    assert events[-1]["status"] == "ok" and events[-1]["output"] == "Gave up waiting."
    assert not (folder / "finished").exists()
