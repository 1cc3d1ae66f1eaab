"""The OpenAI endpoint says ``finish_reason: "length"`` when the run's last model call was cut at max_tokens."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.feedback_plugins import install_cut


@pytest.fixture
def oai(serve, api_key, agents_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from halguru.plugins.manager import reset_plugin_manager

    monkeypatch.syspath_prepend(str(install_cut(tmp_path / "site")))
    reset_plugin_manager()
    (agents_dir / "cutter").mkdir()
    (agents_dir / "cutter" / "agent.yaml").write_text("name: cutter\nmodel: cut\n")
    server = serve()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0)


def test_whole_answer_cut_is_length(oai) -> None:
    completion = oai.chat.completions.create(model="cutter", messages=[{"role": "user", "content": "Tell all"}])
    assert completion.choices[0].message.content == "The answer is long and"
    assert completion.choices[0].finish_reason == "length"
    whole = oai.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert whole.choices[0].finish_reason == "stop"


def test_streamed_answer_cut_is_length(oai) -> None:
    chunks = list(oai.chat.completions.create(model="cutter", stream=True,
                                              messages=[{"role": "user", "content": "Tell all"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The answer is long and"
    assert chunks[-1].choices[0].finish_reason == "length"
    whole = list(oai.chat.completions.create(model="echo", stream=True, messages=[{"role": "user", "content": "x"}]))
    assert whole[-1].choices[0].finish_reason == "stop"
