"""Ctrl-C during a workflow step: the run stops, stored cancelled, and the CLI says how to go on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

TOOLS = '''
import asyncio
from pathlib import Path
from halguru import tool

@tool
def first() -> str:
    "Done at once."
    return "first"

@tool
async def hang() -> str:
    "Hangs until the site is back."
    Path(__file__).with_name("started").touch()
    if not Path(__file__).with_name("up").exists():
        await asyncio.sleep(60)
    return "second"
'''


def test_ctrl_c_in_a_step_says_how_to_resume_from_the_finished_steps(tmp_path: Path, halguru_cmd: list[str],
                                                                      subprocess_env: dict[str, str]) -> None:
    """It said only "The partial answer is stored (see `halguru logs`)": the way on, `runs resume`, went unsaid
    (as a failed run's error line says it)."""
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: flow\ntools: [first, hang]\nworkflow:\n  steps:\n"
                                       "    - {id: a, tool: first}\n    - {id: b, tool: hang}\n")
    (folder / "tools.py").write_text(TOOLS)
    proc = subprocess.Popen([*halguru_cmd, "run", str(folder), "go"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):
            if (folder / "started").exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    runs = json.loads(subprocess.run([*halguru_cmd, "runs", "list", "--json"], env=subprocess_env,
                                     capture_output=True, text=True, timeout=60).stdout)
    assert [r["status"] for r in runs] == ["cancelled"]
    run_id = runs[0]["id"]
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.rstrip().endswith("Stopped. The partial answer is stored (see `halguru logs`); "
                                 f"`halguru runs resume {run_id}` goes on from its finished steps.")
    events = json.loads(subprocess.run([*halguru_cmd, "logs", "show", run_id, "--json"], env=subprocess_env,
                                       capture_output=True, text=True, timeout=60).stdout)["events"]
    cut = [e for e in events if e["type"] == "tool_result"][-1]  # the cut call has its end, as a plain agent's
    assert (cut["name"], cut["content"]) == ("hang", "error: cancelled by the user before this call finished")
    (folder / "up").touch()
    resumed = subprocess.run([*halguru_cmd, "runs", "resume", run_id], env=subprocess_env, capture_output=True,
                             text=True, timeout=60)
    assert resumed.stdout.strip() == "second", resumed.stderr
