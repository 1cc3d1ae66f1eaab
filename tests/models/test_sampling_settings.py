"""agent.yaml's sampling takes llama.cpp's top_k and min_p; a run records them in its model calls only when
set, so the traces and conversation-test recordings of agents that leave them out match as before."""

from __future__ import annotations

import pytest

from halguru.agents.loader import load_agent
from halguru.agents.runtime import run_sync
from halguru.errors import AgentSpecError
from halguru.models.base import SamplingSettings

# What a model call's settings held before top_k and min_p existed: recordings compare against it.
BEFORE = {"temperature": 0.2, "top_p": 0.95, "max_tokens": 512, "seed": None, "repeat_penalty": 1.1}


def test_unset_top_k_and_min_p_leave_the_dump_as_it_was_and_set_ones_are_kept() -> None:
    assert SamplingSettings().model_dump() == BEFORE
    assert SamplingSettings(top_k=0, min_p=0.0).model_dump() == {**BEFORE, "top_k": 0, "min_p": 0.0}  # 0: off


def test_agent_yaml_sets_them_and_the_run_records_them_only_when_set(write_agent) -> None:
    plain = write_agent("name: plain\nmodel: scripted\n", name="plain")
    tuned = write_agent(
        "name: tuned\nmodel: scripted\nsampling: {temperature: 0.7, top_k: 20, min_p: 0.1}\n", name="tuned"
    )

    def settings(folder) -> dict:
        (call,) = [e for e in run_sync(folder, "hi").events if e.type == "model_call"]
        return call.settings

    assert settings(plain) == BEFORE
    assert settings(tuned) == {**BEFORE, "temperature": 0.7, "top_k": 20, "min_p": 0.1}


@pytest.mark.parametrize(
    ("sampling", "field"),
    [("{top_k: -1}", "top_k"), ("{min_p: 1.5}", "min_p"), ("{top_k: many}", "top_k"), ("{min_p: .nan}", "min_p")],
)
def test_out_of_range_values_are_one_line_naming_the_field(write_agent, sampling: str, field: str) -> None:
    folder = write_agent(f"name: bad\nmodel: scripted\nsampling: {sampling}\n", name="bad")
    with pytest.raises(AgentSpecError) as refused:
        load_agent(folder)
    assert f"sampling.{field}" in str(refused.value) and "\n" not in str(refused.value).strip(), refused.value
