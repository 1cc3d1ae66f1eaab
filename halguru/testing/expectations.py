"""Checking one turn's outcome against its ``expect:`` block."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from halguru.agents.events import Event, RunFinished
from halguru.testing.spec import Expect, ToolExpectation


@dataclass
class Check:
    expectation: str
    passed: bool
    why: str = ""
    expected: Any = None
    actual: Any = None
    diff: str = ""  # a failed ``equals``: the expected answer against the actual one, line by line


@dataclass
class TurnOutcome:
    """What happened in one turn, as the checks see it."""

    answer: str
    status: str
    error: str | None
    events: list[Event]
    latency_ms: float
    completion_tokens: int
    run_id: str
    judge_score: float | None = None
    judge_error: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_events(cls, events: list[Event], latency_ms: float) -> TurnOutcome:
        finished = events[-1]
        if not isinstance(finished, RunFinished):
            raise TypeError(f"a turn's events end with run_finished, not {finished.type}")
        calls = [{"name": e.name, "arguments": e.arguments} for e in events if e.type == "tool_call"]
        return cls(answer=finished.output, status=finished.status, error=finished.error, events=events,
                   latency_ms=latency_ms, completion_tokens=finished.completion_tokens,
                   run_id=finished.run_id, tool_calls=calls)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


def _check_contains(expect: Expect, out: TurnOutcome) -> list[Check]:
    return [Check("contains", needle in out.answer, "" if needle in out.answer else f"{needle!r} not in the answer",
                  needle, out.answer) for needle in _as_list(expect.contains)]


def _check_not_contains(expect: Expect, out: TurnOutcome) -> list[Check]:
    return [Check("not_contains", needle not in out.answer, "" if needle not in out.answer
                  else f"{needle!r} is in the answer", needle, out.answer) for needle in _as_list(expect.not_contains)]


def _check_regex(expect: Expect, out: TurnOutcome) -> list[Check]:
    assert expect.regex is not None
    try:
        ok = re.search(expect.regex, out.answer) is not None
    except re.error as exc:
        return [Check("regex", False, f"invalid regular expression: {exc}", expect.regex, out.answer)]
    return [Check("regex", ok, "" if ok else "no match in the answer", expect.regex, out.answer)]


def _check_equals(expect: Expect, out: TurnOutcome) -> list[Check]:
    expected, answer = (expect.equals or "").strip(), out.answer.strip()
    ok = answer == expected
    return [Check("equals", ok, "" if ok else "the answer differs", expect.equals, out.answer,
                  "" if ok else answer_diff(expected, answer))]


def answer_diff(expected: str, answer: str, context: int = 2, limit: int = 40) -> str:
    """What differs between an expected answer and the actual one, for a person: ``- `` lines expected, ``+ ``
    lines answered, a few unchanged lines around each change, and under a changed line that resembles its
    counterpart a ``? `` line marking where (difflib's ndiff). Shown and written to JUnit and JSON, where the
    answer and the expectation alone, each cut to a line, hid the difference of a long or multi-line answer."""
    import difflib

    lines = list(difflib.ndiff(expected.splitlines(), answer.splitlines()))
    changed = [i for i, line in enumerate(lines) if not line.startswith("  ")]
    kept = {j for i in changed for j in range(i - context, i + context + 1)}
    shown, skipped = [], False
    for i, line in enumerate(lines):
        if i in kept:
            shown.append(line.rstrip("\n"))
            skipped = False
        elif not skipped:
            shown.append("  …")
            skipped = True
    if len(shown) > limit:
        shown[limit:] = [f"  … ({len(shown) - limit} more lines)"]
    return "\n".join(shown)


def _check_json_schema(expect: Expect, out: TurnOutcome) -> list[Check]:
    import jsonschema

    try:
        data = json.loads(out.answer)
    except json.JSONDecodeError as exc:
        return [Check("json_schema", False, f"the answer is not JSON: {exc.msg}", expect.json_schema, out.answer)]
    try:
        jsonschema.validate(data, expect.json_schema or {})
    except jsonschema.ValidationError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path).lstrip(".")
        at = f" at {where}" if where else ""
        return [Check("json_schema", False, f"does not validate{at}: {exc.message}", expect.json_schema, data)]
    return [Check("json_schema", True, "", expect.json_schema, data)]


def _check_tool_called(expect: Expect, out: TurnOutcome) -> list[Check]:
    checks = []
    for item in _as_list(expect.tool_called):
        want = item if isinstance(item, ToolExpectation) else ToolExpectation(name=item)
        named = [c for c in out.tool_calls if c["name"] == want.name]
        ok = any(_subset(want.arguments, c["arguments"]) for c in named)
        if ok:
            why = ""
        elif named:
            got = "; ".join(_clip(json.dumps(c["arguments"])) for c in named)
            why = f"{want.name} was called with {got}, not with {json.dumps(want.arguments)}"
        else:
            why = f"{want.name} was not called (calls: {', '.join(c['name'] for c in out.tool_calls) or 'none'})"
        checks.append(Check("tool_called", ok, why, want.model_dump(), out.tool_calls))
    return checks


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _check_tool_not_called(expect: Expect, out: TurnOutcome) -> list[Check]:
    names = [c["name"] for c in out.tool_calls]
    return [Check("tool_not_called", name not in names, "" if name not in names else f"{name} was called",
                  name, names) for name in _as_list(expect.tool_not_called)]


def _check_retrieved(expect: Expect, out: TurnOutcome) -> list[Check]:
    sources = [str(hit.get("source", "")) for e in out.events if e.type == "retrieval" for hit in e.hits]
    checks = []
    for wanted in _as_list(expect.retrieved):
        ok = any(_names(source, wanted) for source in sources)
        checks.append(Check("retrieved", ok, "" if ok else f"{wanted!r} not among the hits ({_hits(sources)})",
                            wanted, sources))
    return checks


def _hits(sources: list[str], limit: int = 5) -> str:
    """The sources retrieved, each once, as a failed ``retrieved`` names them: 'hits: a.md, b.md' (or none)."""
    unique = list(dict.fromkeys(sources))
    if not unique:
        return "no search ran, or it found nothing"
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return "hits: " + ", ".join(_clip(source, 100) for source in unique[:limit]) + more


def _names(source: str, wanted: str) -> bool:
    """Whether ``wanted`` names ``source`` (``docs/Dict.txt``): the whole of it, or its last path components, with
    or without their extensions (``Dict.txt``, ``Dict``); not a piece of another name (``Quota.Dict.txt``)."""
    return re.search(rf"(?:^|/){re.escape(wanted)}(?:$|[./])", source) is not None


def _check_handoff(expect: Expect, out: TurnOutcome) -> list[Check]:
    targets = [e.to_agent for e in out.events if e.type == "handoff"]
    ok = expect.handoff_to in targets
    return [Check("handoff_to", ok, "" if ok else f"handoffs: {targets or 'none'}", expect.handoff_to, targets)]


def _check_latency(expect: Expect, out: TurnOutcome) -> list[Check]:
    limit = expect.max_latency_ms or 0
    ok = out.latency_ms <= limit
    return [Check("max_latency_ms", ok, "" if ok else f"took {out.latency_ms:.0f} ms", limit, round(out.latency_ms))]


def _check_tokens(expect: Expect, out: TurnOutcome) -> list[Check]:
    limit = expect.max_tokens or 0
    ok = out.completion_tokens <= limit
    return [Check("max_tokens", ok, "" if ok else f"used {out.completion_tokens} tokens", limit,
                  out.completion_tokens)]


def _check_judge(expect: Expect, out: TurnOutcome) -> list[Check]:
    assert expect.judge is not None
    if out.judge_error:
        return [Check("judge", False, out.judge_error, expect.judge.threshold, None)]
    score = out.judge_score or 0.0
    ok = score >= expect.judge.threshold
    return [Check("judge", ok, "" if ok else f"scored {score:.2f} < {expect.judge.threshold:.2f}",
                  expect.judge.threshold, round(score, 2))]


CHECKERS: dict[str, Callable[[Expect, TurnOutcome], list[Check]]] = {
    "contains": _check_contains,
    "not_contains": _check_not_contains,
    "regex": _check_regex,
    "equals": _check_equals,
    "json_schema": _check_json_schema,
    "tool_called": _check_tool_called,
    "tool_not_called": _check_tool_not_called,
    "retrieved": _check_retrieved,
    "handoff_to": _check_handoff,
    "max_latency_ms": _check_latency,
    "max_tokens": _check_tokens,
    "judge": _check_judge,
}


def check_turn(expect: Expect, out: TurnOutcome) -> list[Check]:
    """Every expectation given in ``expect``; a failed run is a failed check of its own."""
    checks = [] if out.status == "ok" else [Check("run", False, out.error or out.status, "ok", out.status)]
    for key in type(expect).model_fields:
        if getattr(expect, key) is not None:
            checks.extend(CHECKERS[key](expect, out))
    return checks
