"""The ``halguru`` CLI: new, templates, schema, validate, run, logs, --version.

Successful commands go through typer's CliRunner; errors run the real console
script, since ``halguru.cli.app.main()`` is what turns a user error into one
line on stderr and exit code 1.
"""

from __future__ import annotations

import io
import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from halguru import __version__
from halguru.agents.events import Event, ModelCall, RunFinished, RunStarted, Token, ToolCall, ToolResult, parse_event
from halguru.agents.spec import agent_json_schema

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ("basic", "assistant", "knowledge", "team")

SCRIPTED_AGENT = "name: echoer\nmodel: scripted\ntools: [calculator]\n"

CALCULATOR_SCRIPT = """\
- tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]
- "17*23 = 391"
"""


def run_json(cli, *args: str) -> list:
    """`halguru run --json ...` parsed back into events."""
    out = cli("run", "--json", *args).stdout
    return [parse_event(line) for line in out.splitlines()]


def tree_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- new / templates / schema -------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_new_creates_a_valid_project_from_each_template(cli, tmp_path, template):
    name = f"my-{template}"
    out = cli("new", name, "--template", template, "--dir", str(tmp_path)).stdout
    project = tmp_path / name
    assert project.is_dir()
    assert str(project) in out
    spec = yaml.safe_load((project / "agent.yaml").read_text(encoding="utf-8"))
    assert spec["name"] == name
    schema = json.loads((project / "agent.schema.json").read_text(encoding="utf-8"))
    assert schema == agent_json_schema()
    # Every file of the template came along (the agent.yaml with its new name).
    source = REPO / "agents-templates" / template
    expected = {p for p in tree_files(source) if "__pycache__" not in p and not p.endswith(".pyc")}
    assert expected | {"agent.schema.json"} == set(tree_files(project))
    # The project validates as it is.
    assert f"OK: {name}" in cli("validate", str(project)).stdout
    # Nothing left behind beside it (no staging folder).
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_new_refuses_an_existing_folder_and_leaves_it_untouched(cli, cli_error, tmp_path):
    parent = tmp_path / "projects"
    cli("new", "bot", "--template", "assistant", "--dir", str(parent))
    project = parent / "bot"
    (project / "agent.yaml").write_text("name: bot\nmodel: scripted\n# my edits\n", encoding="utf-8")
    (project / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree_files(project)

    line = cli_error("new", "bot", "--template", "basic", "--dir", str(parent))

    assert str(project) in line and "already exists" in line
    assert tree_files(project) == before
    assert [p.name for p in parent.iterdir()] == ["bot"]  # no staging folder left behind
    (parent / "a-file").write_text("x")  # --dir naming a file: said, not "File exists"
    assert cli_error("new", "bot2", "--dir", str(parent / "a-file")).endswith("a-file: not a folder (the project "
                                                                               "is created inside it)")


def test_new_says_how_to_try_the_project_in_words_a_shell_takes_as_they_are(cli, tmp_path):
    # `--dir "my agents"` said `halguru run <tmp>/my agents/bot "Hello!"`: pasted, that ran the folder `my`
    import shlex

    parent = tmp_path / "my agents" / "it's"
    out = cli("new", "bot", "--dir", str(parent)).stdout
    tried = next(line for line in out.splitlines() if line.startswith("Try it:"))
    run, chat = (shlex.split(part) for part in tried.removeprefix("Try it:").split("   or   "))
    assert run == ["halguru", "run", str(parent / "bot"), "Hello!"]
    assert chat == ["halguru", "chat", str(parent / "bot")]


@pytest.mark.parametrize("name", ["2024", "1.5", "0x10", "yes", "on", "null", "1e3", "v1.0"])
def test_new_makes_a_project_that_loads_under_a_name_yaml_would_read_as_a_number_or_a_word(cli, tmp_path, name):
    # `halguru new 2024` wrote `name: 2024`, a number to YAML: the project it made failed to load
    # (`agent.yaml:2: name: Input should be a valid string`), as did `yes` (true), `null` and `on`
    cli("new", name, "--dir", str(tmp_path))
    assert f"OK: {name} (" in cli("validate", str(tmp_path / name)).stdout
    assert yaml.safe_load((tmp_path / name / "agent.yaml").read_text(encoding="utf-8"))["name"] == name


def test_a_text_field_yaml_reads_as_a_number_or_true_says_to_quote_it(cli_error, write_agent):
    # it said `name: Input should be a valid string` of a name that looks like one
    folder = write_agent("name: 2024\nmodel: scripted\n")
    assert cli_error("validate", str(folder)) == (f"Error: {folder / 'agent.yaml'}:1: name: 2024 is a number to YAML, "
                                                  "not a text: quote it (name: \"2024\")")
    folder = write_agent("name: a\nmodel: scripted\ndescription: yes\n")
    assert cli_error("validate", str(folder)) == (f"Error: {folder / 'agent.yaml'}:3: description: true/false to YAML "
                                                  "(as yes, no, on and off are), not a text: put the word in quotes")


def test_new_with_an_unknown_template_lists_the_choices(cli_error, tmp_path):
    line = cli_error("new", "bot", "--template", "nosuch", "--dir", str(tmp_path))
    assert "nosuch" in line
    for template in TEMPLATES:
        assert template in line
    assert not (tmp_path / "bot").exists()


def test_templates_lists_the_four_with_descriptions(cli):
    lines = cli("templates").stdout.splitlines()
    for template in TEMPLATES:
        data = yaml.safe_load((REPO / "agents-templates" / template / "agent.yaml").read_text(encoding="utf-8"))
        assert data["description"]
        row = [line for line in lines if line.split() and line.split()[0] == template]
        assert len(row) == 1, lines
        assert data["description"] in row[0]


def test_schema_prints_the_agent_yaml_json_schema(cli):
    schema = json.loads(cli("schema").stdout)
    assert {"name", "model", "tools", "limits"} <= set(schema["properties"])
    assert "name" in schema["required"] and schema["else"] == {"required": ["model"]}  # not with workflow:
    assert schema["additionalProperties"] is False


def test_schema_output_writes_a_file(cli, tmp_path):
    target = tmp_path / "agent.schema.json"
    out = cli("schema", "-o", str(target)).stdout
    assert str(target) in out
    assert json.loads(target.read_text(encoding="utf-8")) == json.loads(cli("schema").stdout)


# --- validate -----------------------------------------------------------------------------------


def test_validate_ok_lists_model_and_tools(cli, write_agent):
    tools_py = (
        "from halguru import tool\n\n\n@tool\ndef double(x: int) -> int:\n"
        '    """Double a number."""\n    return 2 * x\n'
    )
    folder = write_agent("name: doubler\nmodel: scripted\ntools: [double, calculator]\n", tools_py)
    out = cli("validate", str(folder)).stdout
    assert "OK: doubler" in out and "scripted" in out and "double, calculator" in out
    # The agent.yaml itself is accepted too.
    assert "OK: doubler" in cli("validate", str(folder / "agent.yaml")).stdout


@pytest.mark.parametrize(
    ("yaml_text", "tools_py", "where", "expected"),
    [
        pytest.param("name: a\nmodel: scripted\ncolour: blue\n", None, "agent.yaml:3", ["colour", "unknown field"],
                     id="unknown-field"),
        pytest.param("name: a\nmodel: scripted\nlimits:\n  max_steps: lots\n", None, "agent.yaml:4",
                     ["limits.max_steps", "integer"], id="wrong-type"),
        pytest.param("name: a\nmodel: scripted\n  extra: x\n", None, "agent.yaml:3", ["invalid YAML"],
                     id="invalid-yaml"),
        pytest.param("name: a\ninstructions: hi\n", None, "agent.yaml:1", ["model", "missing"],
                     id="missing-model"),
        pytest.param("name: a\nmodel: nosuchmodel\n", None, "agent.yaml:2",
                     ["model", "unknown model 'nosuchmodel'", "halguru models list"], id="unknown-model"),
        pytest.param("name: a\nmodel: scripted\ntools:\n  - calculator\n  - teleport\n", None, "agent.yaml:5",
                     ["tools", "unknown tool 'teleport'", "calculator"], id="unknown-tool"),
        pytest.param("name: a\nmodel: scripted\n",
                     "from halguru import tool\n\n\n@tool\ndef f(x: int) -> int:\n"
                     '    """F."""\n    return x +\n',
                     "tools.py:7", ["syntax error"], id="tools-syntax-error"),
        # Python 3.11 suggests nothing for a misspelt name imported from a module (halguru's are lazy, too)
        pytest.param("name: a\nmodel: scripted\n", "from halguru import tol\n", "tools.py:1",
                     ["ImportError: cannot import name 'tol' from 'halguru'", "(did you mean 'tool'?)"],
                     id="tools-misspelt-import"),
        pytest.param("name: a\nmodel: scripted\n", "import os\nfrom typing import Litral\n", "tools.py:2",
                     ["cannot import name 'Litral' from 'typing'", "(did you mean 'Literal'?)"],
                     id="tools-misspelt-stdlib-import"),
    ],
)
def test_validate_errors_are_one_line_naming_file_line_and_field(
    cli_error, write_agent, yaml_text, tools_py, where, expected
):
    folder = write_agent(yaml_text, tools_py)
    line = cli_error("validate", str(folder))
    assert f"{folder}/{where}:" in line
    for text in expected:
        assert text in line


GOOD_AGENT = "name: a\nmodel: scripted\ndescription: A helper.\nlimits:\n  max_steps: 2\n  max_tokens: 64\n"


@pytest.mark.parametrize(("mistake", "yaml_text", "says"), [
    ("a key without its colon", GOOD_AGENT.replace("model: scripted", "model scripted"),
     ":2:1: invalid YAML: could not find expected ':'; write this line's key as `key: value`, with ': ' after the key"),
    ("a line indented less than its neighbour", GOOD_AGENT.replace("  max_tokens", " max_tokens"),
     ":6:2: invalid YAML: expected <block end>, but found '<block mapping start>' (while parsing a block mapping at "
     "line 1, column 1); indent this line as the keys (or '- ' items) beside it, with spaces, and check that a quote "
     "opened above is closed"),
    ("a line indented more than its neighbour", GOOD_AGENT.replace("  max_tokens", "   max_tokens"),
     ":6:14: invalid YAML: mapping values are not allowed here; YAML reads this line as the rest of the value above "
     "it: indent it as the keys beside it, and check that the keys above have ': ' after them"),
    ("a tab", GOOD_AGENT.replace("  max_tokens", "\tmax_tokens"),
     ":6:1: invalid YAML: found character '\\t' that cannot start any token (while scanning for the next token); "
     "indent with spaces, not tabs"),
    ("a value holding ': '", GOOD_AGENT.replace("A helper.", "Note: a helper."),
     ":3:18: invalid YAML: mapping values are not allowed here; quote a value that holds ': ' "
     "(description: \"Note: this\")"),
    ("a list left open", GOOD_AGENT + "tools: [calculator, current_time\nmetadata: {}\n",
     ":8:9: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence at line 7, column 8); "
     "separate the items with ', ' and close the list with ']'"),
], ids=["no-colon", "indented-less", "indented-more", "tab", "colon-in-value", "open-list"])
def test_a_yaml_mistake_is_one_line_at_its_line_saying_what_to_do(cli_error, write_agent, mistake, yaml_text, says):
    # PyYAML names its grammar (`<block end>`, `simple key`) and, for a key without its ':', the line after it
    folder = write_agent(yaml_text)
    assert cli_error("validate", str(folder)) == f"Error: {folder / 'agent.yaml'}{says}", mistake


def test_validate_a_folder_without_agent_yaml(cli_error, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = cli_error("validate", str(empty))
    assert str(empty / "agent.yaml") in line and "halguru new" in line


# --- run ----------------------------------------------------------------------------------------


def test_run_scripted_prints_the_answer(cli, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    result = cli("run", str(folder), "hello world")
    assert result.stdout == "You said: hello world\n"


def test_run_with_a_seed_past_an_int64_is_a_usage_error(cli, write_agent):
    """It was a pydantic traceback (SamplingSettings refuses it: llama.cpp kept 32 bits of 2**70, seed 0)."""
    folder = write_agent("name: a\nmodel: scripted\n")
    result = cli("run", str(folder), "hi", "--seed", str(2**70), code=2)
    assert "Invalid value for '--seed'" in result.output and "Traceback" not in result.output
    assert f"{2**70} is not a 64-bit integer" in result.output
    assert "You said: hi" in cli("run", str(folder), "hi", "--seed", str(-(2**63))).stdout
    assert "is not a 64-bit integer" in cli("run", str(folder), "hi", "--seed", str(2**63), code=2).output
    for command in ("run", "chat"):  # its range was printed, wrapped mid-number: [-9 223372036854775808<=x<=...]
        assert "223372036854775808" not in cli(command, "--help").output


def test_run_json_prints_parseable_events(cli, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    events = run_json(cli, str(folder), "hi there")
    assert isinstance(events[0], RunStarted)
    assert events[0].agent == "echoer" and events[0].input == "hi there"
    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "ok" and events[-1].output == "You said: hi there"
    assert "".join(e.text for e in events if isinstance(e, Token)) == "You said: hi there"
    assert any(isinstance(e, ModelCall) for e in events)
    assert [e.seq for e in events] == list(range(len(events)))
    assert {e.run_id for e in events} == {events[0].run_id}


def test_run_model_override_with_a_script_calls_a_tool(cli, write_agent, tmp_path):
    folder = write_agent(SCRIPTED_AGENT)
    script = tmp_path / "script.yaml"
    script.write_text(CALCULATOR_SCRIPT, encoding="utf-8")

    result = cli("run", str(folder), "what is 17*23?", "--model", f"scripted:{script}")

    assert result.stdout == "17*23 = 391\n"
    assert 'calculator(expression="17*23")' in result.stderr
    assert "391" in result.stderr
    [run] = json.loads(cli("logs", "--json").stdout)
    assert run["model"] == f"scripted:{script}"
    assert run["status"] == "ok" and run["output"] == "17*23 = 391"


def test_run_json_with_a_tool_call(cli, write_agent, tmp_path):
    folder = write_agent(SCRIPTED_AGENT)
    script = tmp_path / "script.yaml"
    script.write_text(CALCULATOR_SCRIPT, encoding="utf-8")
    events = run_json(cli, str(folder), "17*23?", "-m", f"scripted:{script}")
    [call] = [e for e in events if isinstance(e, ToolCall)]
    [result] = [e for e in events if isinstance(e, ToolResult)]
    assert call.name == "calculator" and call.arguments == {"expression": "17*23"}
    assert result.call_id == call.call_id and result.content == "391" and not result.is_error


def test_a_failing_run_exits_1_with_one_line_and_is_stored_as_failed(cli, cli_error, write_agent, tmp_path):
    folder = write_agent(SCRIPTED_AGENT)
    script = tmp_path / "fail.yaml"
    script.write_text('- {error: "boom"}\n', encoding="utf-8")

    line = cli_error("run", str(folder), "hi", "--model", f"scripted:{script}")

    assert "boom" in line
    [run] = json.loads(cli("logs", "--json").stdout)
    assert run["status"] == "failed"
    assert "boom" in run["error"]
    assert run["id"] in line


def test_run_with_an_unknown_model_override_is_one_line(cli_error, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    line = cli_error("run", str(folder), "hi", "--model", "nosuchmodel")
    assert "unknown model 'nosuchmodel'" in line


def test_run_and_chat_refuse_a_model_typo_before_any_run(cli, cli_error, write_agent):
    """`halguru run` on a typo (agent.yaml's model or --model) stored a failed run and said "(run run_...)"
    without the file and line `halguru validate` names; `halguru chat` started and failed at every message."""
    folder = write_agent("name: typo\nmodel: scriptd\n")
    expected = f"Error: {folder / 'agent.yaml'}:2: model: unknown model 'scriptd' (did you mean 'scripted'?)"
    assert cli_error("run", str(folder), "hi").startswith(expected)
    assert cli_error("chat", str(folder), input="hi\n").startswith(expected)
    assert cli_error("run", str(write_agent(SCRIPTED_AGENT)), "hi", "--model", "scriptd").startswith(
        "Error: --model: unknown model 'scriptd' (did you mean 'scripted'?)")
    assert "No runs yet" in cli("logs").stdout
    assert cli("run", str(folder), "hi", "--model", "scripted").stdout == "You said: hi\n"  # --model stands in


def test_run_on_a_missing_project_is_one_line(cli_error, tmp_path):
    line = cli_error("run", str(tmp_path / "nowhere"), "hi")
    assert str(tmp_path / "nowhere") in line


def test_run_dash_reads_stdin(cli, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    result = cli("run", str(folder), "-", input="from stdin\n")
    assert result.stdout.startswith("You said: from stdin")
    [run] = json.loads(cli("logs", "--json").stdout)
    assert run["input"].strip() == "from stdin"


def test_run_dash_reads_stdin_in_a_real_process(halguru_cmd, subprocess_env, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    proc = subprocess.run([*halguru_cmd, "run", str(folder), "-"], input="piped text", capture_output=True,
                          text=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "You said: piped text\n"


# --- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def two_runs(cli, write_agent, tmp_path):
    """An echo run, then a run with a calculator call; returns (echo_run_id, tool_run_id)."""
    folder = write_agent(SCRIPTED_AGENT)
    script = tmp_path / "script.yaml"
    script.write_text(CALCULATOR_SCRIPT, encoding="utf-8")
    first = run_json(cli, str(folder), "plain question")
    second = run_json(cli, str(folder), "what is 17*23?", "-m", f"scripted:{script}")
    return first[0].run_id, second[0].run_id


def test_logs_lists_runs(cli, two_runs):
    echo_id, tool_id = two_runs
    lines = cli("logs").stdout.splitlines()
    [echo_row] = [line for line in lines if echo_id in line]
    [tool_row] = [line for line in lines if tool_id in line]
    assert "echoer" in echo_row and " ok " in echo_row and "plain question" in echo_row
    assert "scripted" in echo_row
    assert "echoer" in tool_row and " ok " in tool_row
    # Newest first.
    assert lines.index(tool_row) < lines.index(echo_row)


def test_logs_with_no_runs_says_so(cli):
    assert "No runs yet" in cli("logs").stdout


def test_logs_json(cli, two_runs):
    echo_id, tool_id = two_runs
    rows = json.loads(cli("logs", "--json").stdout)
    assert [r["id"] for r in rows] == [tool_id, echo_id]
    assert rows[1]["agent"] == "echoer" and rows[1]["input"] == "plain question"
    assert rows[1]["output"] == "You said: plain question" and rows[1]["status"] == "ok"
    assert [r["id"] for r in json.loads(cli("logs", "--json", "-n", "1").stdout)] == [tool_id]


def test_logs_show_prints_the_tree_with_the_tool_call(cli, two_runs):
    _, tool_id = two_runs
    out = cli("logs", "show", tool_id).stdout
    assert tool_id in out
    assert "what is 17*23?" in out
    assert 'tool_call calculator(expression="17*23")' in out
    assert "tool_result" in out and "391" in out
    assert "step 1" in out and "step 2" in out
    assert "run_finished ok" in out and "17*23 = 391" in out
    # A unique prefix finds the same run.
    assert cli("logs", "show", tool_id[:-2]).stdout == out


def test_logs_show_json_has_the_run_and_its_events(cli, two_runs):
    _, tool_id = two_runs
    data = json.loads(cli("logs", "show", tool_id, "--json").stdout)
    assert data["run"]["id"] == tool_id and data["run"]["status"] == "ok"
    events = [parse_event(e) for e in data["events"]]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    [call] = [e for e in events if isinstance(e, ToolCall)]
    assert call.name == "calculator"
    assert not any(isinstance(e, Token) for e in events)  # the model_result holds the text


def test_logs_show_unknown_run_is_one_line(cli_error):
    line = cli_error("logs", "show", "nosuchid")
    assert "nosuchid" in line and "halguru logs" in line


def test_logs_show_ambiguous_prefix_is_one_line(cli, cli_error, two_runs):
    line = cli_error("logs", "show", "run_")
    assert "ambiguous" in line


def test_logs_conversations(cli, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    conversation = run_json(cli, str(folder), "first message")[0].conversation_id
    rows = json.loads(cli("logs", "--conversations", "--json").stdout)
    assert [r["id"] for r in rows] == [conversation]
    assert rows[0]["agent"] == "echoer" and rows[0]["messages"] == 2
    out = cli("logs", "--conversations").stdout
    [row] = [line for line in out.splitlines() if conversation in line]
    assert "echoer" in row and "first message" in row


def test_conversation_continues_with_the_earlier_exchange(cli, cli_error, write_agent):
    folder = write_agent(SCRIPTED_AGENT)
    first = run_json(cli, str(folder), "my name is Ada")
    conversation = first[0].conversation_id

    second = run_json(cli, str(folder), "what is my name?", "--conversation", conversation)

    assert second[0].conversation_id == conversation
    assert second[-1].output == "You said: what is my name?"
    stored = json.loads(cli("logs", "show", second[0].run_id, "--json").stdout)
    [model_call] = [e for e in stored["events"] if e["type"] == "model_call"]
    messages = [(m["role"], m["content"]) for m in model_call["messages"]]
    assert messages == [
        ("user", "my name is Ada"),
        ("assistant", "You said: my name is Ada"),
        ("user", "what is my name?"),
    ]
    runs = json.loads(cli("logs", "--json", "--conversation", conversation).stdout)
    assert {r["id"] for r in runs} == {first[0].run_id, second[0].run_id}
    # A conversation that does not exist is a one-line error.
    line = cli_error("run", str(folder), "hi", "--conversation", "conv_nosuch")
    assert "conv_nosuch" in line


def test_two_turns_at_once_in_one_conversation_one_waits_its_turn(cli, write_agent, halguru_cmd, subprocess_env,
                                                                    tmp_path):
    """Four `halguru run -c CONV` at once each read the same history; now one answers and the others are told
    the conversation is busy (one line, nothing stored), and can ask again when it is done."""
    import subprocess

    script = tmp_path / "slow.yaml"
    script.write_text("- {text: \"" + "word " * 20 + "\", token_delay: 0.2}\n")
    folder = write_agent(f"name: slow\nmodel: 'scripted:{script}'\n")
    conversation = run_json(cli, str(folder), "hello")[0].conversation_id
    procs = [subprocess.Popen([*halguru_cmd, "run", str(folder), f"turn {i}", "-c", conversation],
                              env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outcomes = [(p.wait(60), *p.communicate()) for p in procs]  # each answer takes ~4 s: they overlap
    answered = [o for o in outcomes if o[0] == 0]
    refused = [o for o in outcomes if o[0] == 1]
    assert len(answered) == 1 and len(refused) == 2, outcomes
    for _, _, err in refused:
        assert err.count("\n") == 1 and f"conversation {conversation} is answering another message" in err, err
    from halguru.store import open_store

    roles = [m.role for m in open_store().get_messages(conversation)]
    assert roles == ["user", "assistant"] * (1 + len(answered))  # each answer right after its own question
    runs = json.loads(cli("logs", "--json", "--conversation", conversation).stdout)
    assert len(runs) == 1 + len(answered) and {r["status"] for r in runs} == {"ok"}


# --- --version ----------------------------------------------------------------------------------


def test_version(cli):
    assert cli("--version").stdout == f"halguru {__version__}\n"
    assert __version__ == version("halguru")


# --- one rendering of events (halguru.agents.describe) -------------------------------------------


def _render(tree) -> str:
    from rich.console import Console

    console = Console(width=200, no_color=True, record=True, file=io.StringIO())
    console.print(tree)
    return console.export_text()


def test_the_tree_and_the_live_printer_word_events_the_same_way_from_stored_dicts():
    from rich.console import Console

    from halguru.agents.events import ApprovalRejected, Resumed
    from halguru.cli.render import RunPrinter, trace_tree

    events = [ToolCall(run_id="r1", step=1, call_id="c1", name="add", arguments={"a": 1}),
              ToolResult(run_id="r1", step=1, call_id="c1", name="add", content="2", duration_ms=3),
              ApprovalRejected(run_id="r1", call_id="c2", name="send_email", reason="not today"),
              Resumed(run_id="r1", from_run_id="r0", checkpoint="step pay ok", reused=["pay"]),
              RunFinished(run_id="r1", status="ok", output="two", steps=1)]
    run = {"id": "r1", "agent": "calc", "model": "scripted", "status": "ok", "input": "1+1", "duration_ms": 5}
    shown = _render(trace_tree(run, [e.model_dump() for e in events]))  # stored dicts, parsed once
    assert shown == _render(trace_tree(run, events))
    assert "tool_call add(a=1)" in shown and "tool_result add · 3ms · 2" in shown
    assert "approval rejected send_email · not today" in shown
    assert "resumed from r0 at step pay ok · reused pay" in shown and "run_finished ok · two" in shown
    err = Console(width=200, no_color=True, record=True, file=io.StringIO())
    out = io.StringIO()
    printer = RunPrinter(out=out, err=err)
    for e in events:
        printer(e)
    live = err.export_text()
    assert live.splitlines() == ["→ add(a=1)", "← 2", "rejected: send_email", "resumed r0 at step pay ok"]


def test_a_tool_output_with_colon_codes_shows_as_written_in_logs_show_and_the_dev_tree():
    # the labels were Rich markup, which turned :x: and :smile: into emoji (an agent's output is shown as it was)
    from halguru.cli.render import trace_tree
    from halguru.tui.widgets import label

    result = ToolResult(run_id="r1", step=1, call_id="c1", name="shell", content="exit :x: [bold]no[/bold] :smile:")
    events = [ModelCall(run_id="r1", step=1, model="m", messages=[]),
              ToolCall(run_id="r1", step=1, call_id="c1", name="shell", arguments={"cmd": ":rocket:"}), result,
              RunFinished(run_id="r1", status="ok", output="done :tada:")]
    shown = _render(trace_tree({"id": "r1", "agent": "a", "model": "m", "status": "ok", "input": "hi"}, events))
    for written in (":x: [bold]no[/bold] :smile:", ":rocket:", "done :tada:"):
        assert written in shown, shown
    assert "exit :x: [bold]no[/bold] :smile:" in label(result).plain
    assert label(result).spans[0].style == "green"


def test_a_sub_run_nests_under_the_tool_call_that_started_it():
    from halguru.cli.render import trace_tree

    def sub(e: Event) -> Event:  # the specialist's run, started by the lead's ask_tech call
        return e.model_copy(update={"parent_run_id": "r1"})

    events = [ModelCall(run_id="r1", step=1, model="m", messages=[]),
              ToolCall(run_id="r1", step=1, call_id="c1", name="ask_tech", arguments={"request": "line?"}),
              sub(RunStarted(run_id="r2", agent="tech", model="m", input="line?", conversation_id="k")),
              sub(ModelCall(run_id="r2", step=2, model="m", messages=[])),
              sub(RunFinished(run_id="r2", status="ok", output="fine")),
              ToolResult(run_id="r1", step=1, call_id="c1", name="ask_tech", content="fine"),
              RunFinished(run_id="r1", status="ok", output="all good")]
    run = {"id": "r1", "agent": "desk", "model": "m", "status": "ok", "input": "line?"}
    lines = _render(trace_tree(run, events)).splitlines()

    def depth(fragment: str) -> int:
        line = next(line for line in lines if fragment in line)
        return len(line) - len(line.lstrip("│ ├└─"))

    assert depth("tool_call ask_tech") < depth("run r2 · tech") < depth("run_finished ok · fine")
    assert depth("run_finished ok · all good") < depth("tool_call ask_tech")
