"""What the channels' end-to-end tests share: waiting for a condition, `halguru serve --dev` as a real process on
a free loopback port, and a stand-in provider's HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def helper_agent(tmp_path: Path, channels: dict[str, Any], script: list[dict[str, Any]], **spec: Any) -> Path:
    """The folder of agent `helper` (its model scripted: ``script``'s replies, then it echoes) with ``channels``."""
    folder = tmp_path / "agents" / "helper"
    folder.mkdir(parents=True)
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    (folder / "agent.yaml").write_text(yaml.safe_dump({
        "name": "helper", "model": f"scripted:{tmp_path / 'script.yaml'}", "instructions": "Help.",
        "channels": channels, **spec}))
    return folder


def serve_settings(tmp_path: Path, **more: Any) -> Path:
    """A serve config polling for jobs every 0.1 s, retrying after 0.1 s, stopping within 2 s."""
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"job_poll": 0.1, "job_backoff": 0.1, "shutdown_timeout": 2, **more}))
    return config


@contextmanager
def serving(folder: Path, config: Path, halguru_cmd: list[str], env: dict[str, str]) -> Iterator[str]:
    """`halguru serve FOLDER --dev --config CONFIG` on a free port until the block ends (SIGTERM); its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    proc = subprocess.Popen([*halguru_cmd, "serve", str(folder), "--dev", "--port", str(port), "--config", str(config)],
                            env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, "halguru serve")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def get(url: str, path: str, **params: Any) -> Any:
    """A GET of serve's API that must succeed; its JSON."""
    response = httpx.get(url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def jobs(url: str) -> list[dict[str, Any]]:
    return list(get(url, "/v1/jobs", limit=100)["data"])


def ended(url: str) -> bool:
    return all(j["status"] in ("done", "dead") for j in jobs(url))


def history(url: str, conversation: str) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in get(url, f"/v1/conversations/{conversation}/messages")["data"]]


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any,
              headers: dict[str, str] | None = None) -> None:
    """A stand-in provider's JSON answer."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering with ``handler``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start_serving(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
