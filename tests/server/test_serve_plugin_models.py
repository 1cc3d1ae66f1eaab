"""A plugin's models under `halguru serve`: each agent is answered by its own model; one that raises fails its run
(a clean 502 naming the run, whose error says why), not the server (a 500 "internal error")."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.feedback_plugins import install_boom, install_twin, load


@pytest.fixture
def http(serve, api_key, agents_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_boom(tmp_path / "site")
    load(install_twin(tmp_path / "site"), monkeypatch)
    for name, model in (("small", "twin-small"), ("large", "twin-large"), ("boom", "boom")):
        (agents_dir / name).mkdir()
        (agents_dir / name / "agent.yaml").write_text(f"name: {name}\nmodel: {model}\n")
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as client:
        yield client


def ask(http: httpx.Client, agent: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})


def answer(http: httpx.Client, agent: str) -> str:
    response = ask(http, agent)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_two_agents_on_two_models_of_one_provider_each_get_their_own(http) -> None:
    assert answer(http, "large") == "I am twin-large"
    assert answer(http, "small") == "I am twin-small"  # was answered by twin-large's instance


def test_a_plugin_model_that_raises_fails_its_run_and_says_why(http) -> None:
    response = ask(http, "boom")
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "run_failed")  # OpenAI's shape on its route
    run = http.get(f"/v1/runs/{error['message'].split()[3]}").json()
    assert run["error"] == "model boom failed: RuntimeError: upstream 502 from provider"
