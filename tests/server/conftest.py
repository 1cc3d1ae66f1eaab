"""Serve-mode fixtures: agent projects on the scripted model and a real uvicorn on 127.0.0.1:<random port>."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """Two agents: `echo` (public web chat) and `private` (key-only), plus `slow` (a slowly streamed answer)."""
    root = tmp_path / "agents"
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(f"word{i}" for i in range(40)), "token_delay": 0.05}]))
    specs = {
        "echo": {"model": "scripted", "instructions": "Echo.", "description": "echoes",
                 "metadata": {"web_chat": "public"}},
        "private": {"model": "scripted", "instructions": "Private."},
        "slow": {"model": f"scripted:{script}", "instructions": "Slow.", "metadata": {"web_chat": "public"}},
    }
    for name, spec in specs.items():
        (root / name).mkdir(parents=True)
        (root / name / "agent.yaml").write_text(yaml.safe_dump({"name": name, **spec}))
    return root


class Server:
    def __init__(self, app: Any, port: int):
        import uvicorn

        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                                    access_log=False, timeout_graceful_shutdown=1,
                                                    proxy_headers=False))  # as `halguru serve` runs it
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        # one request first, with time to spare: a new server's first answer (its lazy imports) took over httpx's
        # default 5 s on a loaded CI machine, and tests call it with that default
        httpx.get(f"{self.url}/healthz", timeout=60)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def state(self) -> Any:
        return self.app.state.halguru


@pytest.fixture
def serve(agents_dir: Path) -> Iterator[Callable[..., Server]]:
    """Start a real uvicorn serving ``agents_dir`` (settings overridable); stopped after the test."""
    from halguru_server import ServerSettings, create_app

    servers: list[Server] = []

    def start(**settings: Any) -> Server:
        app = create_app(ServerSettings(agents=[agents_dir], **settings))
        server = Server(app, free_port()).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def cli(cli):
    """The CliRunner fixture, with plugin commands (serve, keys) added as `halguru` does at start-up."""
    from halguru.cli.app import app
    from halguru.plugins.manager import get_plugin_manager

    get_plugin_manager().hook.register_commands(cli=app)
    return cli


@pytest.fixture
def api_key() -> Callable[..., str]:
    """Create a key in this test's store; returns the secret."""
    from halguru_server.keys import create_key

    from halguru.store import open_store

    def make(name: str = "test", agents: list[str] | None = None, expires_in: float | None = None,
             scope: str = "developer") -> str:  # a key's own role (keys made before roles: m016)
        return create_key(open_store(), name, agents, expires_in, scope)[1]

    return make


@pytest.fixture
def client(serve: Callable[..., Server], api_key: Callable[..., str]) -> Iterator[httpx.Client]:
    """An HTTP client with a valid key, on a server requiring keys."""
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        c.server = server  # type: ignore[attr-defined]
        yield c


@pytest.fixture
def openai_client(serve: Callable[..., Server], api_key: Callable[..., str]) -> Any:
    """The official openai client with a valid key, on a server requiring keys (``.server``: that server)."""
    import openai

    server = serve()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0, timeout=120)
    client.server = server  # type: ignore[attr-defined]
    return client


@pytest.fixture
def traced() -> Iterator[Callable[[], int]]:
    """How far memory allocated in this process (the server runs in it) rose since the last call, in bytes."""
    tracemalloc.start()
    base = [0]

    def peak() -> int:
        current, top = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rise, base[0] = top - base[0], current
        return rise

    try:
        yield peak
    finally:
        tracemalloc.stop()


@pytest.fixture
def least_rise(traced: Callable[[], int]) -> Callable[[Callable[[], Any]], tuple[Any, int]]:
    """``send()`` three times: (its last answer, the least memory one send added). The server shares this process
    with whatever threads earlier tests left winding down, so one reading can carry their allocations; a body the
    server did read costs every one of the three."""

    def least(send: Callable[[], Any]) -> tuple[Any, int]:
        rises = []
        for _ in range(3):
            traced()
            answer = send()
            rises.append(traced())
        return answer, min(rises)

    return least
