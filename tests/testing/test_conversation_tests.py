"""`halguru test`: passing and failing suites, record -> replay, changed prompts, reports."""

from __future__ import annotations

import http.server
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from halguru.store import open_store
from halguru.testing.spec import TestFormatError, load_test_file

AGENT = """\
name: shop
model: scripted:{script}
instructions: You sell bikes.
tools: [calculator]
"""

SCRIPT = """\
- tool_calls: [{name: calculator, arguments: {expression: "2*150"}}]
- "Two bikes cost 300 EUR."
- "We open at 9:00."
"""

TESTS = """\
tests:
  - name: prices two bikes
    turns:
      - user: How much are two bikes at 150 each?
        expect:
          tool_called: {name: calculator, arguments: {expression: "2*150"}}
          contains: "300"
          max_tokens: 50
      - user: When do you open?
        expect:
          regex: "\\\\d+:\\\\d{2}"
          not_contains: closed
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    (folder / "tests").mkdir(parents=True)
    (folder / "script.yaml").write_text(SCRIPT)
    (folder / "agent.yaml").write_text(AGENT.format(script=folder / "script.yaml"))
    (folder / "tests" / "test_shop.yaml").write_text(TESTS)
    return folder


def test_passing_suite(project, cli):
    result = cli("test", str(project))
    assert "1 passed, 0 failed" in result.stdout
    assert "tool_called" in result.stdout and "FAIL" not in result.stdout


def test_failing_suite_is_reported_with_answer_and_run_id(project, cli):
    (project / "tests" / "test_shop.yaml").write_text(TESTS.replace('contains: "300"', 'contains: "250"'))
    result = cli("test", str(project), code=1)
    assert "0 passed, 1 failed" in result.stdout
    assert "'250' not in the answer" in result.stdout
    assert "Two bikes cost 300 EUR." in result.stdout
    assert "halguru logs show run_" in result.stdout


def test_json_output_has_every_check(project, cli):
    data = json.loads(cli("test", str(project), "--json").stdout)
    [test] = data["results"]
    assert data["passed"] and test["passed"] and test["mode"] == "live"
    checks = [c["expectation"] for turn in test["turns"] for c in turn["checks"]]
    assert checks == ["contains", "tool_called", "max_tokens", "not_contains", "regex"]


def test_record_then_replay_without_the_model(project, cli):
    cli("test", str(project), "--record")
    recording = project / "tests" / "test_shop.recording.json"
    data = json.loads(recording.read_text())
    cassette = data["tests"]["prices two bikes"]
    assert len(cassette["model_calls"]) == 3
    assert cassette["tool_results"] == [{"name": "calculator", "arguments": {"expression": "2*150"},
                                         "content": "300", "error": None}]
    # The model now answers differently: a replay must not ask it.
    (project / "script.yaml").write_text('- "I do not know."\n- "Closed."\n')
    replayed = json.loads(cli("test", str(project), "--replay", "--json").stdout)
    assert replayed["passed"] and replayed["results"][0]["mode"] == "replay"
    assert replayed["results"][0]["turns"][0]["answer"] == "Two bikes cost 300 EUR."
    # default mode replays too, since a recording exists
    assert json.loads(cli("test", str(project), "--json").stdout)["results"][0]["mode"] == "replay"
    # and --live really asks the (changed) model again
    live = json.loads(cli("test", str(project), "--live", "--json", code=1).stdout)
    assert live["results"][0]["turns"][0]["answer"] == "I do not know."


def test_changed_prompt_fails_replay_with_a_diff(project, cli):
    cli("test", str(project), "--record")
    agent_file = project / "agent.yaml"
    agent_file.write_text(agent_file.read_text().replace("You sell bikes.", "You sell scooters."))
    result = cli("test", str(project), "--replay", code=1)
    assert "differs from the recording" in result.stdout
    assert '-      "content": "You sell bikes.",' in result.stdout
    assert '+      "content": "You sell scooters.",' in result.stdout


def test_changed_tool_schema_fails_replay(project, cli):
    cli("test", str(project), "--record")
    agent_file = project / "agent.yaml"
    agent_file.write_text(agent_file.read_text().replace("tools: [calculator]", "tools: [calculator, current_time]"))
    result = cli("test", str(project), "--replay", code=1)
    assert "differs from the recording" in result.stdout and "current_time" in result.stdout


def test_missing_recording_in_replay_mode_says_how_to_record(project, cli):
    result = cli("test", str(project), "--replay", code=1)
    assert "no recording for this test" in result.stdout and "--record" in result.stdout


def test_junit_xml_parses_back(project, cli, tmp_path):
    (project / "tests" / "test_more.yaml").write_text(
        "tests:\n  - name: wrong\n    turns:\n      - user: hi\n        expect: {equals: nope}\n")
    junit = tmp_path / "junit.xml"
    cli("test", str(project), "--junit", str(junit), code=1)
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuite" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["prices two bikes"].find("failure") is None
    failure = cases["wrong"].find("failure")
    assert failure is not None and "equals" in failure.text


def test_malformed_file_is_one_error_and_the_others_still_run(project, cli):
    (project / "tests" / "test_broken.yaml").write_text(
        "tests:\n  - name: typo\n    turns:\n      - user: hi\n        expect:\n          contians: x\n")
    result = cli("test", str(project), code=1)
    assert ("test_broken.yaml:6: test 'typo': tests.0.turns.0.expect.contians: unknown key (did you mean "
            "'contains'?)") in result.stdout
    assert "prices two bikes" in result.stdout and "1 passed, 0 failed, 1 file error(s)" in result.stdout


def test_format_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "test_bad.yaml"
    bad.write_text("tests:\n  - name: x\n    turns: []\n")
    expected = r"test_bad\.yaml:3: test 'x': tests\.0\.turns: List should have at least 1"
    with pytest.raises(TestFormatError, match=expected):
        load_test_file(bad)
    bad.write_text("tests: [\n")
    with pytest.raises(TestFormatError, match="invalid YAML"):
        load_test_file(bad)


@pytest.mark.parametrize(("text", "says"), [
    # two tests of one name: the report counted one and the recording kept only the second
    ("tests:\n  - name: hi\n    turns: [{user: a}]\n  - name: hi\n    turns: [{user: b}]\n",
     r"test_bad\.yaml:4: test 'hi': the name of test #1 too"),
    # checked only after the model had run
    ("tests:\n  - name: r\n    turns: [{user: a, expect: {regex: '([a-'}}]\n",
     r"test_bad\.yaml:3: test 'r': tests\.0\.turns\.0\.expect\.regex: not a regular expression"),
    ("tests:\n  - name: s\n    turns: [{user: a, expect: {json_schema: {type: 12}}}]\n",
     r"test 's': tests\.0\.turns\.0\.expect\.json_schema: not a JSON schema"),
])
def test_a_test_file_is_checked_whole_before_anything_runs(tmp_path, text, says):
    bad = tmp_path / "test_bad.yaml"
    bad.write_text(text)
    with pytest.raises(TestFormatError, match=says):
        load_test_file(bad)


@pytest.mark.parametrize("recording", ['[1, 2]', '{"format": 1, "tests": {"greets": {"model_calls": "zz"}}}'])
def test_a_recording_of_the_wrong_shape_is_one_line(project, cli, recording):
    for path in (project / "tests").glob("test_*.yaml"):
        path.with_name(path.stem + ".recording.json").write_text(recording)
    result = cli("test", str(project), "--replay", code=1)
    assert "not a halguru recording" in str(result.exception) and "re-record with --record" in str(result.exception)


def test_filter_with_k(project, cli, cli_error):
    (project / "tests" / "test_more.yaml").write_text(
        "tests:\n  - name: other\n    turns:\n      - user: hi\n        expect: {regex: '.'}\n")
    data = json.loads(cli("test", str(project), "-k", "other", "--json").stdout)
    assert [r["test"] for r in data["results"]] == ["other"]
    # none: said with the tests there are, to choose from (it said "no test matches" alone)
    assert cli_error("test", str(project), "-k", "nothing-matches") == (
        "Error: no test matches -k 'nothing-matches' (a part of 'file::name', any case, or a glob); its tests: "
        "test_more::other, test_shop::prices two bikes")


@pytest.fixture
def flaky_openai_server():
    """A loopback OpenAI-compatible endpoint whose answer alternates between 'yes' and 'no'."""
    answers = itertools.cycle(["yes", "no"])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            chunk = {"choices": [{"index": 0, "delta": {"content": next(answers)}, "finish_reason": "stop"}]}
            body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_repeat_reports_pass_rate(project, cli, flaky_openai_server):
    cli("models", "add", "flaky", "--openai-base-url", flaky_openai_server)
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: says yes\n    turns:\n      - user: ok?\n        expect: {equals: 'yes'}\n")
    data = json.loads(cli("test", str(project), "--model", "flaky", "--repeat", "4", "--json", code=1).stdout)
    assert data["pass_rates"][0]["pass_rate"] == 0.5
    assert [r["passed"] for r in data["results"]] == [True, False, True, False]
    ok = json.loads(cli("test", str(project), "--model", "flaky", "--repeat", "4", "--min-pass-rate", "0.5",
                        "--json").stdout)
    assert ok["passed"]
    table = cli("test", str(project), "--model", "flaky", "--repeat", "2", code=1).stdout
    assert "says yes 50%" in table


def test_each_live_repeat_samples_with_its_own_seed(project, cli):
    """With one seed for every attempt, repeats differed only by the KV cache's rounding: the assistant
    template's Tokyo test passed its first attempt and failed the other four, so no pass rate meant anything."""
    from halguru.store import open_store

    agent = project / "agent.yaml"
    agent.write_text(agent.read_text() + "sampling: {seed: 42}\n")
    cli("test", str(project), "--live", "--repeat", "3")
    store = open_store()
    runs = store.list_runs(20)
    seeds = {e["settings"].get("seed") for r in runs for e in store.get_events(r["id"]) if e["type"] == "model_call"}
    assert seeds == {42, 43, 44}


def test_repeats_of_an_agent_with_the_largest_seed_wrap_around(project, cli):
    """A seed is an int64: the second attempt of seed 2**63 - 1 is -2**63, not a run that fails on its settings."""
    from halguru.store import open_store

    agent = project / "agent.yaml"
    agent.write_text(agent.read_text() + f"sampling: {{seed: {2**63 - 1}}}\n")
    cli("test", str(project), "--live", "--repeat", "2")
    store = open_store()
    seeds = {e["settings"].get("seed") for r in store.list_runs(20) for e in store.get_events(r["id"])
             if e["type"] == "model_call"}
    assert seeds == {2**63 - 1, -(2**63)}


def test_repeat_replays_a_recording_once_and_says_so(project, cli, cli_error):
    """`halguru test PATH --repeat 5 --min-pass-rate 0.8` (the README's line) replayed each recorded test five
    times: five identical rows and a pass rate that measured nothing, without a word."""
    cli("test", str(project), "--record")
    result = cli("test", str(project), "--repeat", "3", "--json")
    data = json.loads(result.stdout)
    assert [(r["test"], r["attempt"], r["mode"]) for r in data["results"]] == [("prices two bikes", 1, "replay")]
    assert ("note: 1 test(s) replayed their recording once (a replay answers the same way every time); --live "
            "runs each 3 times on the model") in result.stderr
    assert len(json.loads(cli("test", str(project), "--repeat", "3", "--live", "--json").stdout)["results"]) == 3
    assert cli_error("test", str(project), "--replay", "--repeat", "2") == (
        "Error: --replay answers each test as recorded, the same every time; --repeat samples the model several "
        "times (with --live)")


def test_eval_compares_models(project, cli, flaky_openai_server):
    cli("models", "add", "flaky", "--openai-base-url", flaky_openai_server)
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: says yes\n    turns:\n      - user: ok?\n        expect: {equals: 'yes'}\n")
    script = project / "yes.yaml"
    script.write_text('- "yes"\n')
    data = json.loads(cli("eval", str(project), "--models", f"flaky,scripted:{script}", "--repeat", "2",
                          "--json").stdout)
    by_model = {d["model"]: d for d in data}
    assert by_model["flaky"]["pass_rate"] == 0.5 and by_model[f"scripted:{script}"]["pass_rate"] == 1.0
    assert by_model[f"scripted:{script}"]["cost_usd"] == 0.0 and by_model["flaky"]["cost_usd"] is None
    # an unknown model stops the eval before anything runs (tests/test_eval_progress.py: one line, exit 1)
    assert "unknown model 'nope'" in str(cli("eval", str(project), "--models", "flaky,nope", code=1).exception)
    table = cli("eval", str(project), "--models", f"flaky,scripted:{script}").stdout
    assert "pass rate" in table and "tool-call validity" in table and "100% (1/1)" in table


def test_eval_measures_tool_call_validity(project, cli):
    script = project / "calls.yaml"
    script.write_text('- tool_calls: [{name: calculator, arguments: {expression: "1+1"}}]\n'
                      '- tool_calls: [{name: calculator, arguments: {expr: "1+1"}}]\n'
                      '- {raw_tool_call: "{broken"}\n- "2"\n')
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: adds\n    turns:\n      - user: 1+1?\n        expect: {contains: '2'}\n")
    agent_file = project / "agent.yaml"
    agent_file.write_text(agent_file.read_text() + "limits: {max_steps: 6}\n")
    [score] = json.loads(cli("eval", str(project), "--models", f"scripted:{script}", "--json").stdout)
    assert (score["tool_calls"], score["valid_tool_calls"]) == (3, 1)


def test_unavailable_judge_fails_only_that_expectation(project, cli):
    (project / "tests" / "test_shop.yaml").write_text(TESTS.replace(
        "          max_tokens: 50\n",
        "          max_tokens: 50\n          judge: {rubric: states a price, model: no-such-model}\n"))
    data = json.loads(cli("test", str(project), "--json", code=1).stdout)
    checks = {c["expectation"]: c for c in data["results"][0]["turns"][0]["checks"]}
    assert not checks["judge"]["passed"] and "unknown model 'no-such-model'" in checks["judge"]["why"]
    assert checks["contains"]["passed"] and checks["tool_called"]["passed"]


def test_judge_scores_with_a_model_and_replays_the_score(project, cli, tmp_path):
    judge_script = tmp_path / "judge.yaml"
    judge_script.write_text('- "9"\n')
    (project / "tests" / "test_shop.yaml").write_text(TESTS.replace(
        "          max_tokens: 50\n",
        f"          max_tokens: 50\n          judge: {{rubric: states a price, model: 'scripted:{judge_script}',"
        " threshold: 0.8}\n"))
    data = json.loads(cli("test", str(project), "--record", "--json").stdout)
    checks = {c["expectation"]: c for c in data["results"][0]["turns"][0]["checks"]}
    assert checks["judge"]["passed"] and checks["judge"]["actual"] == 0.9
    judge_script.write_text('- "1"\n')  # a replay uses the recorded score, not the judge
    assert json.loads(cli("test", str(project), "--replay", "--json").stdout)["passed"]


def test_json_schema_expectation(project, cli):
    (project / "script.yaml").write_text('- \'{"price": 300}\'\n- "not json"\n')
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: json\n    turns:\n"
        "      - user: price?\n        expect:\n          json_schema: {type: object, required: [price],"
        " properties: {price: {type: integer}}}\n"
        "      - user: again\n        expect:\n          json_schema: {type: object}\n")
    data = json.loads(cli("test", str(project), "--json", code=1).stdout)
    first, second = data["results"][0]["turns"]
    assert first["passed"] and not second["passed"]
    assert "not JSON" in second["checks"][0]["why"]


def test_a_failed_tool_called_or_json_schema_says_what_the_run_did(project, cli):
    """`calculator was called, but not with {"expression": "2*151"}` hid the arguments it was called with, and
    `does not validate: 300 is not of type 'string'` hid where in the answer: both needed `logs show` to read."""
    (project / "script.yaml").write_text(SCRIPT + '- \'{"items": [{"price": 300}]}\'\n')
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: args\n    turns:\n      - user: two bikes?\n        expect:\n"
        "          tool_called: {name: calculator, arguments: {expression: \"2*151\"}}\n"
        "      - user: when?\n        expect: {contains: x}\n"
        "      - user: price?\n        expect:\n          json_schema: {type: object, properties: {items: {type: array,"
        " items: {type: object, properties: {price: {type: string}}}}}}\n")
    result = cli("test", str(project), code=1)
    assert ('calculator was called with {"expression": "2*150"}, not with {"expression": "2*151"}'
            in result.stdout)
    assert "does not validate at items[0].price: 300 is not of type 'string'" in result.stdout


def test_schema_of_the_test_format(cli):
    schema = json.loads(cli("schema", "--tests").stdout)
    expect = schema["$defs"]["Expect"]["properties"]
    assert {"contains", "not_contains", "regex", "equals", "json_schema", "tool_called", "tool_not_called",
            "retrieved", "handoff_to", "max_latency_ms", "max_tokens", "judge"} <= set(expect)


def test_exported_run_becomes_a_passing_test(project, cli):
    cli("run", str(project), "How much are two bikes at 150 each?")
    run_id = json.loads(cli("logs", "--json").stdout)[0]["id"]
    exported = project / "tests" / "test_exported.yaml"
    cli("logs", "export", run_id, "-o", str(exported))
    case = load_test_file(exported).tests[0]
    assert case.turns[0].expect.equals == "Two bikes cost 300 EUR."
    assert case.turns[0].expect.tool_called[0].name == "calculator"
    # the script has moved on; record the exported test against a fresh copy of the script
    (project / "script.yaml").write_text(SCRIPT)
    data = json.loads(cli("test", str(project), "-k", "exported", "--json").stdout)
    assert data["passed"]


def test_pytest_collects_yaml_conversation_tests(project, subprocess_env):
    (project / "tests" / "test_more.yaml").write_text(
        "tests:\n  - name: wrong answer\n    turns:\n      - user: hi\n        expect: {equals: nope}\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf",
                           str(project / "tests")], cwd=project, env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "turn 1 equals: expected 'nope'" in done.stdout
    assert "expected (-) vs answer (+):\n- nope\n+ " in done.stdout  # the lines that differ, as `halguru test`


def test_pytest_collection_checks_the_tools_expectations_name(project, subprocess_env):
    (project / "tests" / "test_more.yaml").write_text(
        "tests:\n  - name: typo\n    turns:\n      - user: hi\n        expect: {tool_not_called: calculater}\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           str(project / "tests" / "test_more.yaml")], cwd=project, env=subprocess_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout + done.stderr  # it passed: the agent has no such tool
    assert "the agent has no tool 'calculater' (did you mean 'calculator'?)" in done.stdout, done.stdout


def test_pytest_fixtures(tmp_path, subprocess_env):
    (tmp_path / "test_mine.py").write_text(
        "def test_agent(halguru_home, halguru_agent, halguru_run, scripted_model, tmp_path):\n"
        "    (tmp_path / 'a').mkdir()\n"
        "    (tmp_path / 'a' / 'agent.yaml').write_text('name: a\\nmodel: scripted\\n')\n"
        "    agent = halguru_agent(tmp_path / 'a')\n"
        "    result = halguru_run(agent, 'hi', model=scripted_model(['hello!']))\n"
        "    assert result.output == 'hello!'\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_records_each_steps_own_model_and_replays_without_them(tmp_path, cli):
    """A workflow has no model: each agent step's own model is recorded, then replayed without it."""
    for name, reply in (("classify", '{"category": "billing"}'), ("reply", "Refund sent.")):
        (tmp_path / f"{name}.yaml").write_text(f"- '{reply}'\n")
        folder = tmp_path / name
        folder.mkdir()
        (folder / "agent.yaml").write_text(f"name: {name}\nmodel: scripted:{tmp_path / f'{name}.yaml'}\n")
    flow = tmp_path / "flow"
    (flow / "tests").mkdir(parents=True)
    (flow / "agent.yaml").write_text("""\
name: flow
tools: [calculator]
workflow:
  steps:
    - {id: classify, agent: ../classify, output: {type: object, required: [category]}}
    - {id: total, tool: calculator, args: {expression: "2*20"}}
    - {id: reply, agent: ../reply, input: "{{ steps.classify.output.category }} {{ steps.total.output }}"}
  output: "{{ steps.reply.output }} ({{ steps.total.output }} EUR)"
""")
    (flow / "tests" / "test_flow.yaml").write_text("""\
tests:
  - name: refund
    turns:
      - user: I want my money back
        expect: {equals: "Refund sent. (40 EUR)", tool_called: calculator}
""")
    recorded = cli("test", str(flow), "--record")
    assert "1 passed, 0 failed" in recorded.stdout
    cassette = json.loads((flow / "tests" / "test_flow.recording.json").read_text())["tests"]["refund"]
    assert [c["request"]["messages"][0]["content"][:20] for c in cassette["model_calls"]] == [
        "I want my money back", "billing 40"]
    assert [r["content"] for r in cassette["tool_results"]] == ["40"]
    # The step models now answer differently: replay still passes (nothing is asked), live fails.
    (tmp_path / "reply.yaml").write_text("- 'Something else.'\n")
    assert "1 passed, 0 failed" in cli("test", str(flow)).stdout
    assert "0 passed, 1 failed" in cli("test", str(flow), "--live", code=1).stdout


def test_record_keeps_a_good_recording_from_a_failing_run_and_refuses_repeat(write_agent, cli, cli_error):
    """`--record` of a failing test replaced the good recording it was tested against; `--record --repeat 2`
    ran once and said nothing."""
    import json

    import yaml

    folder = write_agent("name: echoer\nmodel: scripted\n", name="echoer")
    (folder / "tests").mkdir()
    (folder / "tests" / "test_echo.yaml").write_text(yaml.safe_dump({"tests": [
        {"name": "echoes", "turns": [{"user": "hello", "expect": {"contains": "hello"}}]}]}))
    cli("test", str(folder), "--record")
    recording = folder / "tests" / "test_echo.recording.json"
    good = json.loads(recording.read_text())
    (folder / "s.yaml").write_text(yaml.safe_dump(["something else"]))
    failed = cli("test", str(folder), "--record", "-m", f"scripted:{folder / 's.yaml'}", code=1)
    assert "not recorded: test_echo::echoes failed; its earlier recording (if any) is kept" in failed.output
    assert json.loads(recording.read_text()) == good
    assert "1 passed" in cli("test", str(folder)).output
    assert cli_error("test", str(folder), "--record", "--repeat", "2") == (
        "Error: --record records each test once; --repeat runs tests several times (with --live)")


def test_an_expectation_naming_a_tool_the_agent_lacks_is_a_file_error(project, cli):
    """`tool_not_called: calculater` (misspelt) always passed, and `tool_called: calculater` failed only as
    'was not called'."""
    (project / "tests" / "test_typo.yaml").write_text(
        "tests:\n  - name: typo\n    turns:\n      - user: hi\n        expect:\n"
        "          tool_not_called: calculater\n"
        "          tool_called: [calculator, {name: calculater}]\n")
    result = cli("test", str(project), code=1)
    assert ("test_typo.yaml:6: test 'typo': expect.tool_not_called: the agent has no tool 'calculater' "
            "(did you mean 'calculator'?); its tools: calculator") in result.stdout
    assert "test_typo.yaml:7: test 'typo': expect.tool_called: the agent has no tool 'calculater'" in result.stdout
    assert "prices two bikes" in result.stdout and "1 passed, 0 failed, 1 file error(s)" in result.stdout


def test_a_refused_files_problems_are_each_an_error_line_and_no_empty_table(project, cli):
    """The second problem of a file came without its `error:`, and an empty table's header stood above them."""
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: a\n    turns:\n      - user: hi\n        expect: {contians: x}\n"
        "  - name: b\n    turns:\n      - user: hi\n        expect: {tool_called: calculater}\n")
    lines = cli("test", str(project), code=1).stdout.strip().splitlines()
    where = project / "tests" / "test_shop.yaml"
    assert lines == [
        f"error: {where}:5: test 'a': tests.0.turns.0.expect.contians: unknown key (did you mean 'contains'?)",
        f"error: {where}:9: test 'b': expect.tool_called: the agent has no tool 'calculater' (did you mean "
        "'calculator'?); its tools: calculator",
        "", "0 passed, 0 failed, 1 file error(s)"], lines


def test_failed_reruns_only_the_tests_that_failed_last_until_they_pass(project, cli):
    """There was no way to rerun only what failed: a live suite on a local model takes minutes a test."""
    tests = project / "tests"
    (tests / "test_more.yaml").write_text(
        "tests:\n  - name: greets\n    turns: [{user: hi, expect: {max_tokens: 50}}]\n"
        "  - name: wrong\n    turns: [{user: hi, expect: {contains: nope}}]\n")
    (tests / "test_typo.yaml").write_text("tests:\n  - name: typo\n    turns: [{user: hi, expect: {contians: x}}]\n")

    def ran(*args: str, code: int) -> tuple[list[str], str]:
        result = cli("test", str(project), "--json", *args, code=code)
        return [f"{Path(t['file']).stem}::{t['test']}" for t in json.loads(result.stdout)["results"]], result.stderr

    assert ran(code=1)[0] == ["test_more::greets", "test_more::wrong", "test_shop::prices two bikes"]
    # the failed test and the refused file (whole); not the ones that passed
    only, said = ran("--failed", code=1)
    assert only == ["test_more::wrong"] and "note:" not in said
    (tests / "test_typo.yaml").write_text("tests:\n  - name: typo\n    turns: [{user: hi, expect: {max_tokens: 50}}]\n")
    assert ran("--failed", code=1)[0] == ["test_more::wrong", "test_typo::typo"]
    (tests / "test_more.yaml").write_text((tests / "test_more.yaml").read_text().replace("nope", "EUR"))
    assert ran("--lf", code=0)[0] == ["test_more::wrong"]
    # nothing failed last: all of them, and said
    everything, said = ran("--failed", code=0)
    assert len(everything) == 4 and f"note: no failed test remembered for {project}: running them all\n" in said
    # -k narrows it further; a test that did not run keeps its failure
    (tests / "test_more.yaml").write_text((tests / "test_more.yaml").read_text().replace("EUR", "nope"))
    (tests / "test_typo.yaml").write_text("tests:\n  - name: typo\n    turns: [{user: hi, expect: {contains: x}}]\n")
    ran(code=1)
    assert ran("--failed", "-k", "typo", code=1)[0] == ["test_typo::typo"]
    assert ran("--failed", code=1)[0] == ["test_more::wrong", "test_typo::typo"]
    # failures that are no test now (renamed): all of them, and said
    (tests / "test_more.yaml").write_text((tests / "test_more.yaml").read_text().replace("wrong", "renamed"))
    (tests / "test_typo.yaml").unlink()
    everything, said = ran("--failed", code=1)
    assert len(everything) == 3 and "none of the tests that failed last is there now: running them all" in said


def test_a_teams_tools_are_its_members_and_their_handoff_tools(tmp_path):
    import shutil

    from halguru.agents.loader import load_agent
    from halguru.testing.runner import tool_names

    folder = tmp_path / "team"
    shutil.copytree(Path(__file__).parents[2] / "agents-templates" / "team", folder)
    tools = tool_names(load_agent(folder))
    assert tools is not None and {"calculator", "save_note", "handoff_to_researcher", "handoff_to_writer"} <= tools
    test = folder / "tests" / "test_names.yaml"
    test.write_text("tests:\n  - name: t\n    turns:\n      - user: hi\n        expect:\n"
                    "          tool_called: [handoff_to_writer, save_note]\n          tool_not_called: calculator\n")
    load_test_file(test, tools)
    test.write_text(test.read_text().replace("handoff_to_writer", "handoff_to_writter"))
    with pytest.raises(TestFormatError, match=r"test_names\.yaml:6: .*no tool 'handoff_to_writter' \(did you mean "
                                              r"'handoff_to_writer'\?\)"):
        load_test_file(test, tools)


def test_a_file_with_several_problems_lists_each_on_its_own_line(tmp_path):
    """It said the first and "(and 2 more)": fixing them took a run each."""
    bad = tmp_path / "test_bad.yaml"
    bad.write_text("tests:\n  - name: a\n    turns:\n      - user: hi\n        expect: {contians: x}\n"
                   "  - name: b\n    turns: []\n  - turns: [{user: hi, expect: {max_tokens: 0}}]\n")
    with pytest.raises(TestFormatError) as raised:
        load_test_file(bad)
    lines = str(raised.value).splitlines()
    assert lines == [
        f"{bad}:5: test 'a': tests.0.turns.0.expect.contians: unknown key (did you mean 'contains'?)",
        f"{bad}:7: test 'b': tests.1.turns: List should have at least 1 item after validation, not 0",
        f"{bad}:8: test #3: tests.2.name: required field is missing",
        f"{bad}:8: test #3: tests.2.turns.0.expect.max_tokens: Input should be greater than 0",
    ], lines


@pytest.mark.parametrize(("expect", "says"), [
    ("{contains: 391}", "expect.contains: 391 is a number to YAML, not a text: quote it (contains: \"391\")"),
    ("{not_contains: [x, 3.5]}", "expect.not_contains: 3.5 is a number to YAML, not a text: quote it "
                                 "(not_contains: \"3.5\")"),
    ("{equals: yes}", "expect.equals: true/false to YAML (as yes, no, on and off are), not a text: put the word in "
                      "quotes"),
])
def test_an_expected_text_that_yaml_reads_as_a_number_is_one_line_saying_to_quote_it(tmp_path, expect, says):
    """`contains: 391` was two lines of the union's grammar: `contains.list[str]: should be a list...` and
    `contains.str: Input should be a valid string`."""
    bad = tmp_path / "test_bad.yaml"
    bad.write_text(f"tests:\n  - name: a\n    turns:\n      - user: What is 17*23?\n        expect: {expect}\n")
    with pytest.raises(TestFormatError) as raised:
        load_test_file(bad)
    assert str(raised.value) == f"{bad}:5: test 'a': tests.0.turns.0.{says}"


def test_every_kind_of_problem_is_listed_in_one_run_in_line_order(tmp_path):
    """A duplicate name hid a misspelt tool until it was renamed, a schema problem hid both, and unknown tools came
    in the order they were checked (tool_called first), not the file's."""
    bad = tmp_path / "test_bad.yaml"
    bad.write_text("tests:\n"
                   "  - name: one\n    turns:\n      - user: hi\n        expect: {contains: x}\n"  # 2-5
                   "  - name: one\n    turns:\n      - user: hi\n        expect:\n"  # 6-9
                   "          tool_not_called: calculater\n          tool_called: clock\n"  # 10-11
                   "  - name: three\n    turns:\n      - user: hi\n        expect: {contians: x}\n"  # 12-15
                   "  - name: one\n    turns: []\n")  # 16-17
    with pytest.raises(TestFormatError) as raised:
        load_test_file(bad, {"calculator", "current_time"})
    tools = "its tools: calculator, current_time"
    assert str(raised.value).splitlines() == [
        f"{bad}:6: test 'one': the name of test #1 too; give each test its own",
        f"{bad}:10: test 'one': expect.tool_not_called: the agent has no tool 'calculater' (did you mean "
        f"'calculator'?); {tools}",
        f"{bad}:11: test 'one': expect.tool_called: the agent has no tool 'clock'; {tools}",
        f"{bad}:15: test 'three': tests.2.turns.0.expect.contians: unknown key (did you mean 'contains'?)",
        f"{bad}:16: test 'one': the name of test #1 too; give each test its own",
        f"{bad}:17: test 'one': tests.3.turns: List should have at least 1 item after validation, not 0",
    ]


def test_two_record_runs_of_one_file_at_once_keep_both_recordings(tmp_path, halguru_cmd, subprocess_env):
    """`halguru test --record -k` in two terminals (or pytest-xdist workers): the run that finished last wrote the
    recording as it had read it at its start, dropping the other's test."""
    import subprocess

    folder = tmp_path / "slow"
    (folder / "tests").mkdir(parents=True)
    (folder / "script.yaml").write_text('- {text: "Hello there, how are you today?", token_delay: 0.1}\n')
    (folder / "agent.yaml").write_text(f"name: slow\nmodel: scripted:{folder / 'script.yaml'}\n")
    (folder / "tests" / "test_slow.yaml").write_text(
        "tests:\n  - name: first\n    turns: [{user: hi, expect: {contains: Hello}}]\n"
        "  - name: second\n    turns: [{user: hey, expect: {contains: Hello}}]\n")
    procs = [subprocess.Popen([*halguru_cmd, "test", str(folder), "--record", "-k", name], env=subprocess_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
             for name in ("first", "second")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)

    recording = json.loads((folder / "tests" / "test_slow.recording.json").read_text())
    assert sorted(recording["tests"]) == ["first", "second"]
    assert not (folder / "tests" / ".locks").exists()  # nothing to commit with the project


def test_junit_xml_goes_into_a_new_folder_and_parses_with_control_characters_in_an_error(project, cli, tmp_path):
    # the model fails with an error that carries an ESC and a NUL (an endpoint's body, say): XML 1.0 has no place
    # for them, so they are written escaped; and a CI job's reports/ folder does not exist on a fresh checkout
    (project / "script.yaml").write_text('- {error: "upstream \\e[31mexploded\\0"}\n')
    junit = tmp_path / "reports" / "ci" / "junit.xml"
    cli("test", str(project), "--junit", str(junit), code=1)
    failure = ET.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "upstream \\x1b[31mexploded\\x00" in failure.text


def test_a_failed_expectation_names_its_file_and_line(project, cli, tmp_path):
    (project / "tests" / "test_shop.yaml").write_text(TESTS.replace('contains: "300"', 'contains: "250"'))
    where = f"{project / 'tests' / 'test_shop.yaml'}:7"  # the line of `contains: "250"`
    assert f"{where}: contains: expected 250, '250' not in the answer" in cli("test", str(project), code=1).stdout
    data = json.loads(cli("test", str(project), "--json", code=1).stdout)
    assert [(c["expectation"], c["line"]) for c in data["results"][0]["turns"][0]["checks"] if not c["passed"]] == [
        ("contains", 7)]
    junit = tmp_path / "junit.xml"
    cli("test", str(project), "--junit", str(junit), code=1)
    assert f"{where}: turn 1 (contains)" in ET.parse(junit).getroot().find("testcase/failure").text
    # a run that failed points at its turn's user line
    (project / "script.yaml").write_text('- {error: "connection refused"}\n')
    where = f"{project / 'tests' / 'test_shop.yaml'}:4"
    assert f"{where}: run: expected ok, connection refused" in cli("test", str(project), code=1).stdout


def test_a_failed_equals_shows_what_differs_in_the_report_junit_and_json(project, cli, tmp_path):
    # a long two-line expectation whose second line differs by one character: cut to one line of 60
    # characters each, the expected answer and the actual one hid where they differ (JUnit had neither)
    expected = "Two bikes cost 300 EUR.\nDelivery is free for orders over 200 EUR in the whole city."
    answer = "Two bikes cost 300 EUR.\nDelivery is free for orders over 250 EUR in the whole city."
    (project / "script.yaml").write_text(SCRIPT.replace('"Two bikes cost 300 EUR."', json.dumps(answer)))
    (project / "tests" / "test_shop.yaml").write_text(TESTS.replace(
        'contains: "300"', f"equals: {json.dumps(expected)}"))
    diff = ["  Two bikes cost 300 EUR.",
            "- Delivery is free for orders over 200 EUR in the whole city.",
            "?                                    -",
            "+ Delivery is free for orders over 250 EUR in the whole city.",
            "?                                   +"]  # where each line differs
    junit = tmp_path / "junit.xml"
    out = cli("test", str(project), "--junit", str(junit), code=1).stdout
    assert "expected (-) vs answer (+):\n" + "\n".join(f"    {line}" for line in diff) in out
    assert "\n".join(diff) in ET.parse(junit).getroot().find("testcase/failure").text
    data = json.loads(cli("test", str(project), "--json", code=1).stdout)
    [failed] = [c for c in data["results"][0]["turns"][0]["checks"] if not c["passed"]]
    assert failed["expectation"] == "equals" and failed["diff"] == "\n".join(diff)
    assert {c["diff"] for turn in data["results"][0]["turns"] for c in turn["checks"] if c["passed"]} == {None}


def test_concurrency_runs_tests_at_once_and_reports_them_in_file_order(project, cli):
    # each test waits 1 s for its answer (an endpoint's latency): five at once take about one second, not five
    (project / "script.yaml").write_text('- {text: "slow answer", token_delay: 1}\n')
    cases = "".join(f"  - name: t{i}\n    turns:\n      - user: q{i}\n        expect: {{contains: slow}}\n"
                    for i in range(5))
    (project / "tests" / "test_shop.yaml").write_text("tests:\n" + cases)
    started = time.monotonic()
    data = json.loads(cli("test", str(project), "--live", "--concurrency", "5", "--json").stdout)
    assert time.monotonic() - started < 3.5
    assert data["passed"] and [r["test"] for r in data["results"]] == [f"t{i}" for i in range(5)]
    started = time.monotonic()
    cli("eval", str(project), "--models", "scripted:" + str(project / "script.yaml"), "-j", "5")
    assert time.monotonic() - started < 3.5


def test_a_junit_path_that_cannot_be_written_still_shows_the_results(project, cli, tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("test", str(project), "--junit", str(tmp_path / "file" / "junit.xml"), code=1)
    assert "1 passed, 0 failed" in result.stdout



def _interrupted_after_quick(project, command: list[str], env) -> tuple[int, str, str]:
    """Run ``command`` on tests where "quick" answers at once and "stuck" waits in its second turn; Ctrl-C once
    "quick" passed. Its exit status, stdout and stderr."""
    (project / "script.yaml").write_text('- "fast"\n- {text: "slow", token_delay: 60}\n')
    turn = "      - user: hi\n        expect: {contains: fast}\n"
    (project / "tests" / "test_shop.yaml").write_text(
        f"tests:\n  - name: quick\n    turns:\n{turn}  - name: stuck\n    turns:\n{turn}{turn}")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # one progress line per test, piped
            if "quick passed" in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, out, err


def test_ctrl_c_reports_the_tests_that_finished_and_exits_130(project, halguru_cmd, subprocess_env, tmp_path):
    junit = tmp_path / "junit.xml"
    code, out, err = _interrupted_after_quick(project, [*halguru_cmd, "test", str(project), "--junit", str(junit)],
                                              subprocess_env)
    assert code == 130, err
    assert "1 passed, 0 failed" in out and "Traceback" not in err
    assert [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")] == ["quick"]


def test_ctrl_c_before_any_test_finished_says_so_and_exits_130(project, halguru_cmd, subprocess_env):
    """Ctrl-C while the first test still ran exited 130 without a word: it says nothing finished."""
    (project / "script.yaml").write_text('- {text: "slow", token_delay: 60}\n')
    (project / "tests" / "test_shop.yaml").write_text(
        "tests:\n  - name: stuck\n    turns:\n      - user: hi\n        expect: {contains: fast}\n")
    proc = subprocess.Popen([*halguru_cmd, "test", str(project)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=subprocess_env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not any(r["status"] == "running" for r in open_store().list_runs(5, test_runs=True)):
            assert time.monotonic() < deadline and proc.poll() is None, "the test's run did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: no test had finished" in err and "Traceback" not in err and out == ""


def test_ctrl_c_during_eval_reports_what_finished_and_exits_130(project, halguru_cmd, subprocess_env):
    """Ctrl-C in `halguru eval` printed nothing: the model being evaluated is scored on the tests that finished
    (as `halguru test` reports them), the models not reached are left out, and it exits 130."""
    first, second = "scripted:" + str(project / "script.yaml"), "scripted:" + str(project / "other.yaml")
    code, out, err = _interrupted_after_quick(
        project, [*halguru_cmd, "eval", str(project), "--models", f"{first},{second}"], subprocess_env)
    assert code == 130, err
    assert "100% (1/1)" in out and "other.yaml" not in out and "Traceback" not in err
    assert "interrupted" in err


def test_retrieved_names_a_source_not_a_piece_of_another_ones_name(tmp_path, cli):
    """``retrieved: Dict.txt`` passed when only ``docs/Quota.Dict.txt`` was among the hits (Dovecot's wiki pages
    have four such pairs: ``Authentication.txt`` in ``Debugging.Authentication.txt``...): a test that should fail
    passed. A source is named whole, or by its last path components, with or without their extensions."""
    folder = tmp_path / "wiki"
    (folder / "docs").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "docs" / "Dict.txt").write_text("Dict proxy\n\nThe dict process answers key-value lookups.\n")
    (folder / "docs" / "Quota.Dict.txt").write_text("Dictionary quota\n\nQuota usage counters live in a dict.\n")
    (folder / "agent.yaml").write_text("name: wiki\nmodel: scripted\nknowledge: [docs]\n"
                                       "retrieval: {mode: auto, top_k: 1, embedder: fast}\n")
    question = "  - name: {name}\n    turns:\n      - user: where do quota usage counters live\n" \
               "        expect: {{retrieved: {wanted}}}\n"
    named = ["docs/Quota.Dict.txt", "Quota.Dict.txt", "Quota.Dict", "Dict.txt", "Dict", "ict.txt"]
    (folder / "tests" / "test_wiki.yaml").write_text(
        "tests:\n" + "".join(question.format(name=f"n{i}", wanted=wanted) for i, wanted in enumerate(named)))
    data = json.loads(cli("test", str(folder), "--json", code=1).stdout)
    assert [test["passed"] for test in data["results"]] == [True, True, True, False, False, False]
    # a failed one says what was retrieved instead (it said only "not among the hits"), as tool_called its calls
    [check] = data["results"][3]["turns"][0]["checks"]
    assert check["why"] == "'Dict.txt' not among the hits (hits: docs/Quota.Dict.txt)"


def test_an_exported_run_that_was_resumed_is_one_turn_that_passes(tmp_path, cli):
    """A workflow run that failed (or was killed), fixed and `runs resume`d was exported as two turns with the
    same input, the first expecting nothing: the test sent the message twice and failed on the second."""
    folder = tmp_path / "flow"
    (folder / "tests").mkdir(parents=True)
    (folder / "agent.yaml").write_text(
        "name: flow\ntools: [double, check]\nworkflow:\n  steps:\n    - id: d\n      tool: double\n"
        "      args: {n: 5}\n    - id: c\n      tool: check\n      args: {n: \"{{ steps.d.output }}\"}\n")
    broken = folder / "BROKEN"
    (folder / "tools.py").write_text(
        "from pathlib import Path\n\nfrom halguru import tool\n\n\n@tool\ndef double(n: int) -> int:\n"
        "    \"\"\"Double.\"\"\"\n    return 2 * n\n\n\n@tool\ndef check(n: int) -> str:\n    \"\"\"Check.\"\"\"\n"
        f"    if Path({str(broken)!r}).exists():\n        raise RuntimeError('not yet')\n    return f'ok {{n}}'\n")
    broken.touch()
    cli("run", str(folder), "go", code=1)
    failed = json.loads(cli("logs", "--json").stdout)[0]["id"]
    broken.unlink()
    cli("runs", "resume", failed)
    resumed = json.loads(cli("logs", "--json").stdout)[0]["id"]
    exported = folder / "tests" / "test_exported.yaml"
    cli("logs", "export", resumed, "-o", str(exported))

    [turn] = load_test_file(exported).tests[0].turns
    assert turn.user == "go" and turn.expect.equals == "ok 10"
    assert [c.name for c in turn.expect.tool_called] == ["double", "check"]
    assert json.loads(cli("test", str(folder), "--json").stdout)["passed"]
