"""Publish-to-live: from `halguru publish` starting to the first chat answered by the new version (goal: at most
2 s), against a `halguru serve` process on loopback; the baseline is one chat answered on the same server.

Each round changes the agent's answer, runs the real CLI (`halguru publish DIR --to URL`, token from
HALGURU_TOKEN) and then asks until the answer is the new version's, so the figure holds the CLI's start, the
bundle, the upload, the server's checks (`halguru validate`'s), storing, the swap and one chat.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import httpx
import yaml
from _common import Result, median, spread

GOAL_MS = 2000.0
TOOLS = 'from halguru import tool\n\n\n@tool\ndef lookup(order: str) -> str:\n    """Look an order up."""\n' \
        '    return f"order {order}: shipped"\n'


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shop(folder: Path, says: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "shop", "model": "scripted:answers.yaml",
                                                       "instructions": "Orders.", "tools": ["lookup"]}))
    (folder / "tools.py").write_text(TOOLS)
    (folder / "answers.yaml").write_text(yaml.safe_dump([says]))


def _answer(http: httpx.Client) -> tuple[str, float]:
    started = time.perf_counter()
    conv = http.post("/v1/conversations", json={"agent": "shop"}).json()["id"]
    out = http.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json().get("output", "")
    return str(out), (time.perf_counter() - started) * 1000


def measure(quick: bool) -> list[Result]:
    from halguru_server.keys import create_key

    from halguru.store import open_store

    rounds = 3 if quick else 10
    work = Path(tempfile.mkdtemp(prefix="halguru-bench-publish-"))
    (work / "agents" / "echo").mkdir(parents=True)
    (work / "agents" / "echo" / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
    key = create_key(open_store(), "bench", scope="developer")[1]  # publishing takes a developer's key
    port = _port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "HALGURU_TOKEN": key, "NO_COLOR": "1"}
    server = subprocess.Popen([str(bin_dir / "halguru"), "serve", str(work / "agents"), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    live_ms: list[float] = []
    chat_ms: list[float] = []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("bench_publish: the server did not get ready")
                time.sleep(0.1)
            for i in range(rounds + 1):  # the first round warms the CLI's and the server's imports
                _shop(work / "shop", f"v{i} here")
                started = time.perf_counter()
                subprocess.run([str(bin_dir / "halguru"), "publish", str(work / "shop"), "--to", url], env=env,
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while not (got := _answer(http))[0].startswith(f"v{i} "):
                    time.sleep(0.01)
                if i:
                    live_ms.append((time.perf_counter() - started) * 1000)
                    chat_ms.append(got[1])
    finally:
        server.terminate()
        server.wait(30)
    value = median(live_ms)
    return [Result(bench="publish", metric="publish-to-live (`halguru publish` start → first chat on the new "
                                           "version)", value=value, unit="ms", goal=GOAL_MS, higher_is_better=False,
                   ratio=value / median(chat_ms), baseline="of one chat answered",
                   detail=f"publish-to-live {spread(live_ms, ' ms')}, one chat {spread(chat_ms, ' ms')}",
                   runs=rounds)]


if __name__ == "__main__":
    _common.main("Publish", measure, __doc__ or "")
