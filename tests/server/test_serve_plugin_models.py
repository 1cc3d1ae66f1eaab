"""A plugin's models under `halguru serve`: each agent is answered by its own model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.feedback_plugins import install_twin


@pytest.fixture
def http(serve, api_key, agents_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from halguru.plugins.manager import reset_plugin_manager

    monkeypatch.syspath_prepend(str(install_twin(tmp_path / "site")))
    reset_plugin_manager()
    for name in ("small", "large"):
        (agents_dir / name).mkdir()
        (agents_dir / name / "agent.yaml").write_text(f"name: {name}\nmodel: twin-{name}\n")
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as client:
        yield client


def answer(http: httpx.Client, agent: str) -> str:
    response = http.post("/v1/chat/completions", json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_two_agents_on_two_models_of_one_provider_each_get_their_own(http) -> None:
    assert answer(http, "large") == "I am twin-large"
    assert answer(http, "small") == "I am twin-small"  # was answered by twin-large's instance
