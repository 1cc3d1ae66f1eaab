"""Orchestration costs, with the scripted model: what durability and workflows add per step.

- checkpoints: a team run saves its state after every model reply that calls tools and after every tool
  call (one SQLite transaction each, with the trace so far). Measured as µs per step over the same agent
  run recorded but without a team (so not checkpointed); goal ≤ 300 µs per step.
- workflow steps: µs per step of a 40-step workflow of conditions (recorded, so checkpointed), against the
  same workflow unrecorded; goal ≤ 500 µs per step.
- parallel branches: 4 independent agent steps whose models take 0.2 s each; wall time ÷ the sum of the
  four; goal ≤ 0.35.
- MCP in serve mode: a request whose agent calls a tool of a stdio MCP server (a Python SDK server), with
  the servers kept running between requests, ÷ the same request starting the server per run; goal ≤ 0.2.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from _common import Result, median, spread

from halguru.agents.loader import load_agent
from halguru.agents.runtime import run
from halguru.models.scripted import ScriptedModel

STEPS = 10
WORKFLOW_STEPS = 40

TOOLS = '''
from halguru import tool

@tool
async def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b
'''


def write(folder: Path, text: str, tools: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text, encoding="utf-8")
    if tools:
        (folder / "tools.py").write_text(tools, encoding="utf-8")
    return folder


def script() -> list[dict[str, Any]]:
    calls = [{"tool_calls": [{"name": "add", "arguments": {"a": i, "b": 1}}]} for i in range(STEPS - 1)]
    return [*calls, {"text": "The sum is 10."}]


async def timed(agent: Any, record: bool, model: Any = None) -> float:
    started = time.perf_counter()
    async for event in run(agent, "go", model=model, record=record):
        if event.type == "run_finished":
            assert event.status == "ok", event  # type: ignore[union-attr]
    return time.perf_counter() - started


async def batches(once: Any, count: int, per_batch: int) -> list[float]:
    for _ in range(per_batch):
        await once()
    return [median([await once() for _ in range(per_batch)]) for _ in range(count)]


async def measure_async(quick: bool) -> list[Result]:
    count, per_batch = (3, 10) if quick else (7, 30)
    root = Path(tempfile.mkdtemp(prefix="halguru-bench-orch-"))
    limits = f"limits: {{max_steps: {STEPS}}}\n"
    plain = load_agent(write(root / "plain", "name: plain\nmodel: scripted\ntools: [add]\n" + limits, TOOLS))
    write(root / "helper", "name: helper\nmodel: scripted\n")
    team = load_agent(write(root / "team", "name: team\nmodel: scripted\ntools: [add]\n" + limits
                            + f"team: {{specialists: [../helper], max_steps: {STEPS + 1}}}\n", TOOLS))
    durable_s, plain_s = [], []
    for _ in range(count):  # alternate, so both see the same machine load
        durable_s += await batches(lambda: timed(team, True, ScriptedModel(script())), 1, per_batch)
        plain_s += await batches(lambda: timed(plain, True, ScriptedModel(script())), 1, per_batch)
    added = [(d - p) / STEPS * 1e6 for d, p in zip(durable_s, plain_s, strict=True)]
    results = [Result(
        bench="orchestration", metric="checkpoint µs per step (team run, recorded)", value=median(added),
        unit="µs", goal=300, higher_is_better=False, ratio=median(durable_s) / median(plain_s),
        baseline="of the same agent without a team",
        detail=(f"team {median(durable_s) * 1e3:.2f} ms, plain {median(plain_s) * 1e3:.2f} ms for {STEPS} steps "
                f"(2 checkpoints a tool round); per step {spread(added, ' µs')}"), runs=count)]

    steps = "\n".join(f"    - {{id: s{i}, condition: '{i} + 1'}}" for i in range(WORKFLOW_STEPS))
    flow = load_agent(write(root / "flow", f"name: flow\nworkflow:\n  steps:\n{steps}\n"))
    recorded_s, bare_s = [], []
    for _ in range(count):
        recorded_s += await batches(lambda: timed(flow, True), 1, per_batch // 3 or 1)
        bare_s += await batches(lambda: timed(flow, False), 1, per_batch // 3 or 1)
    per_step = [r / WORKFLOW_STEPS * 1e6 for r in recorded_s]
    results.append(Result(
        bench="orchestration", metric="workflow µs per step (condition steps, recorded)", value=median(per_step),
        unit="µs", goal=500, higher_is_better=False, ratio=median(recorded_s) / median(bare_s),
        baseline="of the same workflow unrecorded",
        detail=(f"recorded {median(recorded_s) * 1e3:.1f} ms, unrecorded {median(bare_s) * 1e3:.1f} ms for "
                f"{WORKFLOW_STEPS} steps; per step {spread(per_step, ' µs')}"), runs=count))

    (root / "slow.yaml").write_text('- {text: "a b c d", token_delay: 0.05}\n')  # 4 pieces: 0.2 s
    write(root / "slow", f"name: slow\nmodel: scripted:{root / 'slow.yaml'}\n")
    parallel = "\n".join(f"    - {{id: p{i}, agent: ../slow, needs: []}}" for i in range(4))
    wide = load_agent(write(root / "wide", f"name: wide\nworkflow:\n  steps:\n{parallel}\n"))
    one = load_agent(write(root / "one", "name: one\nworkflow:\n  steps:\n    - {id: p, agent: ../slow}\n"))
    wide_s = await batches(lambda: timed(wide, True), count, 3)
    one_s = await batches(lambda: timed(one, True), count, 3)
    results.append(Result(
        bench="orchestration", metric="4 parallel agent steps ÷ 4 × one step",
        value=median(wide_s) / (4 * median(one_s)),
        unit="x", goal=0.35, higher_is_better=False, ratio=median(wide_s) / median(one_s),
        baseline="of one step alone",
        detail=f"4 in parallel {median(wide_s) * 1e3:.0f} ms, one {median(one_s) * 1e3:.0f} ms", runs=count))
    return results


MCP_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("calc", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


server.run()
'''


def measure_mcp_serve(quick: bool) -> Result:
    """Median request time through a real uvicorn, with and without the serve-mode MCP pool."""
    import statistics
    import sys
    import threading

    import httpx
    import uvicorn
    import yaml
    from halguru_server import ServerSettings, create_app

    root = Path(tempfile.mkdtemp(prefix="halguru-bench-mcp-"))
    script = root / "script.yaml"
    folder = write(root / "calc", f"name: calc\nmodel: scripted:{script}\nmcp:\n  - name: calc\n"
                                  f"    command: [{sys.executable}, server.py]\n")
    (folder / "server.py").write_text(MCP_SERVER)
    requests = 4 if quick else 10

    def serve_and_time(pooled: bool) -> float:
        with socket_port() as port:
            settings = ServerSettings(agents=[folder], dev=True, keep_mcp_servers=pooled)
            server = uvicorn.Server(uvicorn.Config(create_app(settings),
                                                   host="127.0.0.1", port=port, log_config=None, access_log=False))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.02)
            times = []
            try:
                for _ in range(requests + 1):  # the first request starts the pooled server: not counted
                    script.write_text(yaml.safe_dump([{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]},
                                                      "3"]))
                    base = f"http://127.0.0.1:{port}/v1/conversations"
                    conv = httpx.post(base, json={"agent": "calc"}).json()["id"]
                    started = time.perf_counter()
                    answer = httpx.post(f"{base}/{conv}/messages", json={"content": "1+2"}, timeout=60).json()
                    times.append(time.perf_counter() - started)
                    assert answer["status"] == "ok" and answer["tool_calls"], answer
            finally:
                server.should_exit = True
                thread.join(15)
        return statistics.median(times[1:])

    per_run = serve_and_time(False)
    pooled = serve_and_time(True)
    return Result(bench="orchestration", metric="MCP tool request in serve mode, servers kept running",
                  value=pooled / per_run, unit="x", goal=0.2, higher_is_better=False, ratio=pooled / per_run,
                  baseline="of starting the server per run",
                  detail=f"pooled {pooled * 1e3:.0f} ms, per run {per_run * 1e3:.0f} ms per request", runs=requests)


class socket_port:
    """A free loopback port (context manager, for symmetry with the servers that use it)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        return None


def measure(quick: bool) -> list[Result]:
    return [*asyncio.run(measure_async(quick)), measure_mcp_serve(quick)]


if __name__ == "__main__":
    _common.main("Orchestration (scripted model)", measure, __doc__ or "")
