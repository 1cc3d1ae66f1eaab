"""A test with a schema problem hid the tools its expectations misname: `expect: {contanis: hi, tool_not_called:
calculater}` said only the misspelt key, and the misspelt tool came out one fix later (the README promises every
problem of a file in one run). And a value of a field taking several shapes was said once per shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru.testing.spec import TestFormatError, load_test_file


def test_a_test_with_a_schema_problem_still_has_its_tools_checked(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.yaml"
    bad.write_text("tests:\n"
                   "  - name: a\n    turns:\n      - user: hi\n"  # 2-4
                   "        expect: {contanis: hi, tool_not_called: calculater}\n"  # 5
                   "      - user: again\n        expect:\n          tool_called: [{name: clock}, 3]\n"  # 6-8
                   "  - turns:\n      - user: hi\n        expect: {tool_called: calculater}\n"  # 9-11
                   "        decide: nope\n")  # 12
    with pytest.raises(TestFormatError) as raised:
        load_test_file(bad, {"calculator"})
    lines = str(raised.value).splitlines()
    said = "\n".join(lines)
    assert f"{bad}:5: test 'a': expect.tool_not_called: the agent has no tool 'calculater' (did you mean " \
           "'calculator'?); its tools: calculator" in lines, said
    assert f"{bad}:5: test 'a': tests.0.turns.0.expect.contanis: unknown key (did you mean 'contains'?)" in lines
    assert f"{bad}:11: test #2: expect.tool_called: the agent has no tool 'calculater' (did you mean " \
           "'calculator'?); its tools: calculator" in lines, said
    # an expectation whose own value is wrong is said once, as the schema problem it is
    assert not [line for line in lines if "no tool 'clock'" in line], said


def test_a_valid_file_is_unchanged(tmp_path: Path) -> None:
    good = tmp_path / "test_good.yaml"
    good.write_text("tests:\n  - name: a\n    turns:\n      - user: hi\n        expect: {tool_called: calculator}\n")
    assert load_test_file(good, {"calculator"}).tests[0].turns[0].expect.tool_called == "calculator"


def test_a_value_of_a_field_taking_several_shapes_is_one_problem_in_the_file_s_words(tmp_path: Path) -> None:
    """`tool_called: {name: calculator, args: ...}` said three problems, two of them about shapes the value was
    not meant to have, in pydantic's words (`tool_called.list[union[str,ToolExpectation]]: should be a list`,
    `tool_called.str: Input should be a valid string`), and `args` got no did-you-mean."""
    bad = tmp_path / "test_bad.yaml"
    bad.write_text("tests:\n  - name: a\n    turns:\n"
                   "      - user: hi\n        expect: {tool_called: {name: calculator, args: {x: 1}}}\n"  # 4-5
                   "      - user: hi\n        decide: [{aprove: {to: x}}]\n"  # 6-7
                   "      - user: hi\n        expect: {tool_called: 5}\n"  # 8-9
                   "      - user: hi\n        expect: {tool_called: [calculator, 3]}\n"  # 10-11
                   "      - user: hi\n        decide: [{reject: 5}]\n")  # 12-13
    with pytest.raises(TestFormatError) as raised:
        load_test_file(bad)
    assert str(raised.value).splitlines() == [
        f"{bad}:5: test 'a': tests.0.turns.0.expect.tool_called.args: unknown key (did you mean 'arguments'?)",
        f"{bad}:7: test 'a': tests.0.turns.1.decide.0.aprove: unknown key (did you mean 'approve'?)",
        f"{bad}:9: test 'a': tests.0.turns.2.expect.tool_called: 5 is a number to YAML, not a text: quote it "
        "(tool_called: \"5\")",
        f"{bad}:11: test 'a': tests.0.turns.3.expect.tool_called.1: 3 is a number to YAML, not a text: quote it "
        "(tool_called: \"3\")",
        f"{bad}:13: test 'a': tests.0.turns.4.decide.0.reject: 5 is a number to YAML, not a text: quote it "
        "(reject: \"5\")",
    ]
