"""Serve mode against clients that never finish a request (slowloris), guarded against uvicorn's own protocol.

Two real server processes on loopback with the same app and a 1,024-file limit: ``halguru serve`` (its
connections guarded, halguru_server/connections.py) and the baseline, the same app under plain ``uvicorn``
(its own h11 protocol: what serve was before). For each:

- req/s of GET /healthz on one keep-alive connection, no attack (the guard's cost; goal ≥ 0.9 of the baseline);
- a flood of 1,100 sockets that each send half a request head, then 10 GET /healthz with a 3 s timeout each:
  the share answered (goal 1.0) and their median latency;
- the same with 1,100 POSTs that send their head and one byte of a 500-byte body.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import _common
import httpx
import yaml
from _common import Result, median, stop

OPEN_FILES = 1024
FLOOD = 1100
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
BODY = (b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n{")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agents(root: Path) -> Path:
    (root / "echo").mkdir(parents=True, exist_ok=True)
    (root / "echo" / "agent.yaml").write_text(yaml.safe_dump({"name": "echo", "model": "scripted",
                                                               "instructions": "x"}))
    return root


def _start(guarded: bool, agents: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = {**os.environ, "HALGURU_SERVE_LOG_LEVEL": "warning"}
    if guarded:
        command = [sys.executable, "-m", "halguru", "serve", str(agents), "--dev", "--port", str(port)]
    else:  # the same app, as `halguru serve --workers N` builds it in each worker, under uvicorn's protocol
        from halguru_server.app import SETTINGS_ENV
        from halguru_server.settings import ServerSettings

        env[SETTINGS_ENV] = ServerSettings(agents=[agents], dev=True, log_level="warning").model_dump_json()
        command = [sys.executable, "-m", "uvicorn", "--factory", "halguru_server.app:app_from_env",
                   "--port", str(port), "--log-level", "warning"]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    proc = subprocess.Popen(command, env=env, preexec_fn=limit, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    _common.wait_until_up(proc, url, log)
    return proc, url


def _rps(url: str, seconds: float) -> float:
    with httpx.Client(base_url=url) as client:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.get("/healthz").raise_for_status()
            done += 1
        return done / (time.perf_counter() - start)


def _through_flood(url: str, first: bytes, tries: int) -> tuple[float, float]:
    """(share of ``tries`` requests answered, their median seconds) while FLOOD sockets hold ``first``."""
    port = int(url.rsplit(":", 1)[1])
    flood = []
    for _ in range(FLOOD):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(first)
            flood.append(sock)
        except OSError:
            time.sleep(0.01)
    answered: list[float] = []
    try:
        for _ in range(tries):
            started = time.perf_counter()
            try:
                if httpx.get(f"{url}/healthz", timeout=3).status_code == 200:
                    answered.append(time.perf_counter() - started)
            except httpx.TransportError:
                pass
    finally:
        for sock in flood:
            sock.close()
    time.sleep(1)  # let the server see the flood go before the next measurement
    return len(answered) / tries, median(answered) if answered else float("nan")


def measure(quick: bool) -> list[Result]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FLOOD:  # the flood's sockets are this process's files
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * FLOOD), hard))
    agents = _agents(_common.HOME / "agents")
    seconds, tries = (1.0, 4) if quick else (3.0, 10)
    figures: dict[bool, dict[str, tuple[float, float]]] = {}
    for guarded in (False, True):
        proc, url = _start(guarded, agents, _common.HOME / f"serve-{guarded}.log")
        try:
            rps = _rps(url, seconds)
            figures[guarded] = {"rps": (rps, 0.0), "head": _through_flood(url, HEAD, tries),
                                "body": _through_flood(url, BODY, tries)}
        finally:
            stop(proc, 15)
    base, ours = figures[False], figures[True]
    ratio = ours["rps"][0] / base["rps"][0]
    results = [Result("slow_clients", "req/s GET /healthz, guarded ÷ uvicorn's protocol", ratio, "x", 0.9, True,
                      ratio, "uvicorn's own h11 protocol",
                      f"{ours['rps'][0]:.0f} vs {base['rps'][0]:.0f} req/s, one keep-alive connection", 1)]
    for kind, what in (("head", "half-sent heads"), ("body", "bodies that stop after one byte")):
        share, latency = ours[kind]
        base_share, base_latency = base[kind]
        results.append(Result(
            "slow_clients", f"requests answered through {FLOOD:,} {what} ({OPEN_FILES:,} files)", share, "", 1.0,
            True, share / max(base_share, 1 / tries), f"uvicorn's protocol (answered {base_share:.0%}"
            + (")" if base_share else f"; counted as 1 of {tries}: the ratio is a floor)"),
            f"median {latency * 1000:.0f} ms (baseline: {base_share:.0%} answered"
            + (f", median {base_latency * 1000:.0f} ms)" if base_share else ", each timed out after 3 s)"), tries))
    return results


if __name__ == "__main__":
    _common.main("Serve against slow clients: a flood of unfinished requests", measure,
                 "halguru serve's connection guard against uvicorn's own protocol, same app, 1,024 files")
