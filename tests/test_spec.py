"""agent.yaml and tools.py: what loads, and the one-line errors for what does not."""

from __future__ import annotations

import pytest

from halguru.agents.checks import validate_project
from halguru.agents.loader import load_agent
from halguru.agents.spec import AgentSpec, agent_json_schema
from halguru.errors import AgentSpecError

GOOD = """\
name: helper
model: scripted
instructions: Be brief.
tools: [calculator]
limits:
  max_steps: 3
"""


def test_valid_agent_loads_with_defaults(write_agent):
    agent = load_agent(write_agent(GOOD))
    assert agent.name == "helper"
    assert list(agent.tools) == ["calculator"]
    assert agent.spec.limits.max_steps == 3
    assert agent.spec.limits.max_tokens == 512  # default
    assert agent.instructions == "Be brief."


def test_agent_file_path_works_as_well_as_folder(write_agent):
    folder = write_agent(GOOD)
    assert load_agent(folder / "agent.yaml").name == "helper"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (GOOD + "colour: blue\n", ["agent.yaml:7:", "colour", "unknown field"]),
        (GOOD.replace("max_steps: 3", "max_steps: lots"), ["agent.yaml:6:", "limits.max_steps", "integer"]),
        (GOOD.replace("model: scripted\n", ""), ["agent.yaml:1:", "model", "missing"]),
        (GOOD.replace("tools: [calculator]", "tools: [calculator"), ["agent.yaml:", "invalid YAML"]),
        ("- just\n- a list\n", ["must be a YAML mapping"]),
        (GOOD.replace("name: helper", "name: 'has spaces'"), ["agent.yaml:1:", "name"]),
    ],
)
def test_invalid_agent_yaml_is_one_line_naming_file_line_and_field(write_agent, yaml_text, expected):
    with pytest.raises(AgentSpecError) as info:
        load_agent(write_agent(yaml_text))
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(("setting", "line"), [
    ("sampling: {temperature: .nan}", "sampling.temperature"),  # said "should be less than or equal to 2"
    ("sampling: {top_p: .inf}", "sampling.top_p"),
    ("limits: {max_steps: 3, timeout: .inf}", "limits.timeout"),  # was accepted: a run without a time limit
])
def test_a_float_setting_that_is_not_a_number_says_so(write_agent, setting, line):
    with pytest.raises(AgentSpecError) as info:
        load_agent(write_agent(GOOD.replace("limits:\n  max_steps: 3\n", setting + "\n")))
    assert f"{line}: must be a number, not .nan or .inf" in str(info.value)


@pytest.mark.parametrize("name", [".", ".hidden", "_x", "Café"])
def test_a_new_agent_name_must_start_with_a_letter_or_digit(cli_error, name, tmp_path):
    """`halguru new .hidden` was told to "use letters, digits, '-', '_' or '.'", which it did; `halguru new Café`
    too: é is a letter to whoever typed it."""
    line = cli_error("new", name, "--dir", str(tmp_path))
    assert line == f"Error: invalid agent name {name!r}: start with an ASCII letter or digit, then use ASCII " \
                   "letters, digits, '-', '_' or '.'"


def test_unknown_tool_names_its_line_and_the_choices(write_agent):
    folder = write_agent(GOOD.replace("tools: [calculator]", "tools:\n  - calculator\n  - teleport"))
    with pytest.raises(AgentSpecError) as info:
        load_agent(folder)
    assert "agent.yaml:6: tools: unknown tool 'teleport'" in str(info.value)
    assert "current_time" in str(info.value)


def test_unknown_model_is_reported_on_validate(write_agent):
    folder = write_agent(GOOD.replace("model: scripted", "model: no-such-model"))
    load_agent(folder)  # loading does not resolve models...
    with pytest.raises(AgentSpecError) as info:  # ...validation does
        validate_project(folder)
    assert "agent.yaml:2: model: unknown model 'no-such-model'" in str(info.value)


def test_tools_py_syntax_error_names_the_line(write_agent):
    folder = write_agent(GOOD, tools_py="from halguru import tool\n\n@tool\ndef broken(:\n    pass\n")
    with pytest.raises(AgentSpecError) as info:
        load_agent(folder)
    assert "tools.py:4: syntax error" in str(info.value)


def test_tools_py_runtime_error_names_the_line(write_agent):
    folder = write_agent(GOOD, tools_py="import math\n\nx = 1 / 0\n")
    with pytest.raises(AgentSpecError) as info:
        load_agent(folder)
    assert "tools.py:3: ZeroDivisionError" in str(info.value)


def test_tools_from_tools_py_are_allowed_only_when_listed(write_agent):
    tools_py = (
        "from halguru import tool\n\n"
        "@tool\ndef double(x: int) -> int:\n    'Double x.'\n    return 2 * x\n\n"
        "@tool\ndef secret(x: int) -> int:\n    'Not listed.'\n    return x\n"
    )
    agent = load_agent(write_agent(GOOD.replace("[calculator]", "[double]"), tools_py=tools_py))
    assert list(agent.tools) == ["double"]
    assert agent.tools["double"].parameters["properties"]["x"]["type"] == "integer"


def test_missing_instructions_file_is_an_error(write_agent):
    folder = write_agent(GOOD + "instructions_file: prompt.md\n")
    with pytest.raises(AgentSpecError, match=r"instructions_file: prompt\.md does not exist"):
        load_agent(folder)
    (folder / "prompt.md").write_text("Always answer in French.")
    assert load_agent(folder).instructions == "Be brief.\n\nAlways answer in French."


def test_json_schema_describes_the_fields():
    schema = agent_json_schema()
    assert {"name", "model", "instructions", "tools", "knowledge", "limits", "sampling"} <= set(schema["properties"])
    assert set(schema["required"]) == {"name"} and schema["else"] == {"required": ["model"]}  # unless workflow:
    assert schema["additionalProperties"] is False
    AgentSpec.model_validate({"name": "x", "model": "scripted"})


@pytest.mark.parametrize(("line", "field"), [("seed: 1180591620717411303424", "sampling.seed"),
                                             ("top_k: 4294967297", "sampling.top_k")])
def test_a_seed_or_top_k_llama_cpp_would_truncate_is_refused_naming_the_line(write_agent, line, field):
    """ctypes kept the low 32 bits: seed 2**70 sampled as seed 0, top_k 2**32 + 1 as top_k 1."""
    with pytest.raises(AgentSpecError, match=rf"agent\.yaml:\d+: {field}: Input should be less than or equal to"):
        load_agent(write_agent(GOOD + f"sampling:\n  {line}\n"))


@pytest.mark.parametrize(("yaml_text", "where"), [
    (GOOD.replace("name: helper", "name: " + "a" * 3000), "agent.yaml:1: name:"),
    (GOOD + "schedules:\n  - {name: " + "s" * 3000 + ", cron: '@daily'}\n", "schedules.0.name:"),
], ids=["agent", "schedule"])
def test_an_agent_or_schedule_name_over_100_characters_is_one_line(write_agent, yaml_text, where):
    """Such a name worked on SQLite and failed on PostgreSQL (an index row over ~2,700 bytes), said as a store
    outage; every name that reaches the store and the API's routes is capped where agent.yaml is read."""
    with pytest.raises(AgentSpecError) as info:
        load_agent(write_agent(yaml_text))
    message = str(info.value)
    assert "\n" not in message and where in message and "at most 100 characters" in message
    assert "a" * 100 not in message and "s" * 100 not in message  # not echoed back
    load_agent(write_agent(GOOD.replace("name: helper", "name: " + "a" * 100)))  # the cap itself is fine


def test_a_new_agent_name_over_100_characters_is_refused(cli_error, tmp_path):
    line = cli_error("new", "a" * 101, "--dir", str(tmp_path))
    assert line == "Error: invalid agent name 'aaaaaaaaaaaaaaaaaaaa…': at most 100 characters (it has 101)"
    assert not any(tmp_path.iterdir())
