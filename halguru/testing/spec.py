"""The conversation test format: YAML files named ``test_*.yaml`` in an agent project's ``tests/``.

```yaml
tests:
  - name: tells the time in Tokyo
    turns:
      - user: What time is it in Tokyo?
        expect:
          tool_called: {name: current_time, arguments: {timezone: Asia/Tokyo}}
          regex: "\\\\d{2}:\\\\d{2}"
          max_latency_ms: 20000
```

Errors name the file, the test and the line, like agent.yaml errors do.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from halguru.errors import HalguruError, did_you_mean
from halguru.yamlfile import every_problem, not_a_text, read_mapping, yaml_line_for

TEST_GLOB = "test_*.y*ml"


class TestFormatError(HalguruError):
    """A conversation test file is malformed."""

    __test__ = False  # not a pytest test class


class ToolExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = Field(default={}, description="a subset the call's arguments must contain")


class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubric: str = Field(description="what a good answer does, in plain words")
    model: str = Field(description="the model that scores the answer (a reference, as in agent.yaml)")
    threshold: float = Field(default=0.7, ge=0, le=1, description="pass when the score (0..1) reaches this")


class Expect(BaseModel):
    """What must hold after one user turn; every given key is checked."""

    model_config = ConfigDict(extra="forbid")

    contains: str | list[str] | None = Field(default=None, description="substrings the answer must contain")
    not_contains: str | list[str] | None = Field(default=None, description="substrings it must not contain")
    regex: str | None = Field(default=None, description="a regular expression the answer must match (search)")
    equals: str | None = Field(default=None, description="the exact answer (surrounding whitespace ignored)")
    json_schema: dict[str, Any] | None = Field(default=None, description="the answer parses as JSON and validates")
    tool_called: str | ToolExpectation | list[str | ToolExpectation] | None = Field(
        default=None, description="tools that must be called (name, or name + a subset of the arguments)")
    tool_not_called: str | list[str] | None = Field(default=None, description="tools that must not be called")
    retrieved: str | list[str] | None = Field(default=None, description="sources that must be among the hits")
    handoff_to: str | None = Field(default=None, description="the agent the run must hand off to")
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0, description="completion tokens of the whole turn")
    judge: Judge | None = None


    @field_validator("contains", "not_contains", "regex", "equals", "tool_not_called", "retrieved", "handoff_to",
                     mode="before")
    @classmethod
    def _texts(cls, value: Any, info: ValidationInfo) -> Any:
        """`contains: 391` (a number to YAML) or `contains: yes` (a boolean): one line saying to quote it, not
        two of the union's grammar (`contains.list[str]: should be a list`, `contains.str: Input should be...`)."""
        for item in value if isinstance(value, list) else [value]:
            if said := not_a_text(item, str(info.field_name)):
                raise ValueError(said)
        return value

    @field_validator("regex")
    @classmethod
    def _a_regex(cls, value: str | None) -> str | None:
        if value is not None:  # checked at load, before any model runs
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _a_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            import jsonschema

            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a JSON schema: {exc.message}") from None
        return value


class ApproveEdited(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: dict[str, Any] = Field(description="approve the call with these arguments instead of the model's")


class Reject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reject: str = Field(description="refuse the call; the model is told this reason")


Decision = Literal["approve"] | ApproveEdited | Reject


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="the user's message")
    decide: list[Decision] = Field(default=[], description="what a human decides on each approval the turn "
                                   "waits for, in order: approve, {approve: {edited arguments}}, {reject: reason}")
    expect: Expect = Expect()


class TestCase(BaseModel):
    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid")

    name: str
    turns: list[Turn] = Field(min_length=1)

    @model_validator(mode="after")
    def _named(self) -> TestCase:
        if not self.name.strip():
            raise ValueError("name must not be empty")
        return self


class TestFile(BaseModel):
    """A file of conversation tests."""

    __test__ = False  # not a pytest test class
    model_config = ConfigDict(extra="forbid", json_schema_extra={"title": "halguru conversation tests"})

    tests: list[TestCase] = Field(min_length=1)


def test_files(project: Path) -> list[Path]:
    return sorted((project / "tests").glob(TEST_GLOB))


def load_test_file(path: Path, tools: Collection[str] | None = None) -> TestFile:
    """The file's tests; with ``tools`` (every tool the agent may call), an expectation naming another tool is an
    error too (``tool_not_called: calculater`` would always pass). Every problem of the file is said at once, one
    a line in line order (a duplicate name does not hide a misspelt tool), as `halguru validate` lists agent.yaml's."""
    text, data = read_mapping(path, TestFormatError, "no such test file", "with a `tests:` list")
    tests = data.get("tests")
    raw: list[Any] = tests if isinstance(tests, list) else []
    problems: list[tuple[int, str]] = []
    try:
        loaded: TestFile | None = TestFile.model_validate(data)
    except ValidationError as exc:
        loaded = None
        problems += [(line, f"{_test_of(data, loc)} {problem}".lstrip()) for loc, line, problem
                     in every_problem(text, exc, unknown="unknown key", model=TestFile)]
    problems += _duplicate_names(raw, text)
    if tools is not None:  # every expectation naming tools, those of a test with other problems too
        problems += _unknown_tools(_tool_expectations(loaded, raw), text, tools)
    if problems:
        raise TestFormatError("\n".join(f"{path}:{line}: {problem}"
                                        for line, problem in sorted(problems, key=lambda p: p[0])))
    assert loaded is not None  # no problem: the file validated
    return loaded


_TOOL_KEYS = ("tool_called", "tool_not_called")


def _tool_expectations(loaded: TestFile | None, raw: list[Any]) -> list[tuple[int, str, int, Expect]]:
    """(test index, its label, turn index, expectations) of each turn, by its index in the file. In a file that
    did not validate, a turn's `tool_called`/`tool_not_called` are read on their own, so that a misspelt key
    beside them does not hide a misspelt tool (one whose own value is wrong is a schema problem, said already)."""
    if loaded is not None:
        return [(i, f"test {case.name!r}", j, turn.expect)
                for i, case in enumerate(loaded.tests) for j, turn in enumerate(case.turns)]
    found: list[tuple[int, str, int, Expect]] = []
    for i, item in enumerate(raw):
        turns = item.get("turns") if isinstance(item, dict) else None
        name = item.get("name") if isinstance(item, dict) else None
        label = f"test {name!r}" if isinstance(name, str) and name.strip() else f"test #{i + 1}"
        for j, turn in enumerate(turns if isinstance(turns, list) else []):
            expect = turn.get("expect") if isinstance(turn, dict) else None
            if not isinstance(expect, dict):
                continue
            try:
                found.append((i, label, j, Expect.model_validate({k: expect[k] for k in _TOOL_KEYS if k in expect})))
            except ValidationError:
                continue
    return found


def _duplicate_names(raw: list[Any], text: str) -> list[tuple[int, str]]:
    """(line, problem) for each test named as an earlier one: runs, recordings and reports tell tests apart by
    name. Read from the file as written, so that a test with other problems still counts."""
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            continue
        if name in seen:
            where = yaml_line_for(text, ("tests", index, "name")) or 1
            problems.append((where, f"test {name!r}: the name of test #{seen[name] + 1} too; give each test its own"))
        else:
            seen[name] = index
    return problems


def _test_of(data: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`` test 'name':`` (or `` test #n:``) for a problem at ``loc`` inside a test, else ""."""
    if len(loc) < 2 or loc[0] != "tests" or not isinstance(loc[1], int):
        return ""
    raw = data["tests"][loc[1]] if isinstance(data.get("tests"), list) else None
    name = raw.get("name") if isinstance(raw, dict) else None
    return f" test {name!r}:" if name else f" test #{loc[1] + 1}:"


def _unknown_tools(turns: list[tuple[int, str, int, Expect]], text: str,
                   tools: Collection[str]) -> list[tuple[int, str]]:
    """(line, problem) for each tool an expectation names that the agent does not have."""
    problems = []
    known = f"its tools: {', '.join(sorted(tools)) or 'none'}"
    for i, label, j, expect in turns:
        for key, index, name in _named_tools(expect):
            if name not in tools:
                line = yaml_line_for(text, ("tests", i, "turns", j, "expect", key, *index)) or 1
                problems.append((line, f"{label}: expect.{key}: the agent has no tool {name!r}"
                                       f"{did_you_mean(name, tools)}; {known}"))
    return problems


def _named_tools(expect: Expect) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, index in its list or (), tool name) of each tool ``expect`` names."""
    named: list[tuple[str, tuple[int, ...], str]] = []
    for key in ("tool_called", "tool_not_called"):
        value = getattr(expect, key)
        items = value if isinstance(value, list) else [] if value is None else [value]
        for k, item in enumerate(items):
            named.append((key, (k,) if isinstance(value, list) else (), item if isinstance(item, str) else item.name))
    return named


def tests_json_schema() -> dict[str, Any]:
    return TestFile.model_json_schema()
