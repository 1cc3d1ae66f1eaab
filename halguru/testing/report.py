"""Reporting test results: a rich table for people, JUnit XML for CI, JSON for tooling."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from halguru.printable import printable
from halguru.testing.runner import SuiteResult, TestResult


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(text: str) -> str:
    """Anyone's text (a test's name, the user's turn, the answer) for the terminal: inert and not markup."""
    return escape(printable(text))


def failure_line(t: TestResult, turn: int, expectation: str) -> int | None:
    """The line of a failed expectation in its test file (of the turn's ``user:`` for a failed run), so an editor
    or a CI log goes straight to it; None when the file changed since it was read."""
    from halguru.testing.spec import Expect
    from halguru.yamlfile import yaml_line_for

    try:
        text = t.file.read_text(encoding="utf-8")
        names = [case.get("name") for case in yaml.safe_load(text)["tests"]]
        index = names.index(t.name)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError):
        return None
    where = ("expect", expectation) if expectation in Expect.model_fields else ("user",)
    return yaml_line_for(text, ("tests", index, "turns", turn - 1, *where))


def _located(t: TestResult, turn: int, expectation: str) -> str:
    """``tests/test_x.yaml:14`` (the file alone when its line is not found)."""
    line = failure_line(t, turn, expectation)
    return f"{t.file}:{line}" if line is not None else str(t.file)


def print_report(suite: SuiteResult, console: Console, min_pass_rate: float = 1.0,
                 print_table: Callable[[Table, Console], None] | None = None) -> None:
    """The results for people on ``console``; the table through ``print_table`` (the CLI's, which writes piped
    rows without Rich's edge padding) where given."""
    table = Table("test", "turn", "expectation", "result", "why", box=None, header_style="bold")
    for t in suite.tests:
        label = f"{t.file.stem}::{t.name}" + (f" #{t.attempt}" if t.attempt > 1 else "")
        rows = [("-", "-", "[red]FAIL[/]", t.error)] if t.error else []
        rows += [(str(turn.index), c.expectation, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.why)
                 for turn in t.turns for c in turn.checks]
        for i, (turn_no, expectation, result, why) in enumerate(rows):
            table.add_row(_shown(label) if i == 0 else "", turn_no, expectation, result, _shown(why),
                          end_section=i == len(rows) - 1)
    if suite.tests:  # every file refused: no header over no rows
        (print_table or (lambda table, console: console.print(table)))(table, console)
    for error in suite.file_errors:  # a file with several problems: one line each, each marked
        for line in error.splitlines():
            console.print(f"[red]error:[/] {_shown(line)}")
    for t in suite.tests:
        if t.passed:
            continue
        for turn in t.turns:
            failed = [c for c in turn.checks if not c.passed]
            if not failed or turn.outcome is None:
                continue
            console.print(f"\n[bold red]✗ {_shown(t.file.stem)}::{_shown(t.name)}[/] turn {turn.index} "
                          f"[dim](run {turn.outcome.run_id}; `halguru logs show {turn.outcome.run_id}`)[/]")
            console.print(f"  user:   {_shown(_short(turn.user, 200))}")
            console.print(f"  answer: {_shown(_short(turn.outcome.answer, 200))}")
            for c in failed:
                console.print(f"  {_shown(_located(t, turn.index, c.expectation))}: {c.expectation}: "
                              f"expected {_shown(_short(c.expected))}, {_shown(c.why)}")
                if c.diff:  # `- ` expected, `+ ` answered
                    console.print("  [bold]expected (-) vs answer (+):[/]")
                    console.print(_shown(_indented(c.diff)), highlight=False)
            if turn.diff:
                console.print("  [bold]what changed since the recording:[/]")
                console.print(_shown(turn.diff), highlight=False)
    rates = suite.pass_rates()
    passed = sum(1 for r in rates.values() if r >= min_pass_rate)
    repeated = any(t.attempt > 1 for t in suite.tests)
    summary = f"{passed} passed, {len(rates) - passed} failed"
    if repeated:
        summary += " · pass rates: " + ", ".join(f"{_shown(label)} {rate:.0%}" for label, rate in _labelled(rates))
    if suite.file_errors:
        summary += f", {len(suite.file_errors)} file error(s)"
    console.print(f"\n[bold]{summary}[/]")


def _indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _labelled(rates: dict[tuple[Path, str], float]) -> list[tuple[str, float]]:
    """Each test's pass rate by its name, or ``file::name`` where two files have a test of that name."""
    files: dict[str, set[Path]] = {}
    for file, name in rates:
        files.setdefault(name, set()).add(file)
    return [(f"{file.stem}::{name}" if len(files[name]) > 1 else name, rate) for (file, name), rate in rates.items()]


class LiveProgress:
    """What a long live test run shows on stderr while it works (the ``progress`` of ``run_suite``).

    On a terminal: a spinner and a bar (tests done of all, elapsed time), "loading MODEL" while a local
    model loads; it disappears when the run ends. Elsewhere (CI logs, pipes): one plain line per step.
    """

    def __init__(self, console: Console, prefix: str = ""):
        self.console, self.prefix = console, prefix
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> LiveProgress:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(escape(self.prefix or "tests"), total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: str, value: str | int) -> None:
        if event == "model":  # halguru eval: the next tests are this model's
            self.prefix = str(value)
            return
        head = f"{self.prefix}: " if self.prefix else ""
        value = value if isinstance(value, int) else printable(value)  # a test's name is anyone's text
        if self.bar is not None:
            if event == "tests":
                self.bar.update(self.task, total=int(value), completed=0)
            elif event == "loading":
                self.bar.update(self.task, description=escape(f"{head}loading model {value}…"))
            elif event == "test":
                self.bar.update(self.task, description=escape(f"{head}{value}"))
            elif event == "done":
                self.bar.advance(self.task)
            return
        if event == "loading":
            self.console.print(f"{head}loading model {value}…", markup=False, highlight=False)
        elif event == "plan":
            self.console.print(f"{head}running {value}", markup=False, highlight=False)
        elif event == "done":
            self.console.print(f"{head}{value}", markup=False, highlight=False)


def _test_json(t: TestResult) -> dict[str, Any]:
    return {
        "file": str(t.file), "test": t.name, "attempt": t.attempt, "mode": t.mode, "passed": t.passed,
        "error": t.error, "duration_ms": round(t.duration_ms, 1),
        "turns": [{
            "turn": turn.index, "user": turn.user, "passed": turn.passed,
            "answer": turn.outcome.answer if turn.outcome else None,
            "run_id": turn.outcome.run_id if turn.outcome else None,
            "latency_ms": round(turn.outcome.latency_ms, 1) if turn.outcome else None,
            "checks": [{"expectation": c.expectation, "passed": c.passed, "why": c.why, "expected": c.expected,
                        "actual": c.actual, "line": None if c.passed else failure_line(t, turn.index, c.expectation),
                        "diff": c.diff or None}
                       for c in turn.checks],
            "diff": turn.diff or None,
        } for turn in t.turns],
    }


def suite_json(suite: SuiteResult, min_pass_rate: float = 1.0) -> dict[str, Any]:
    rates = suite.pass_rates()
    return {
        "passed": suite_passed(suite, min_pass_rate),
        "file_errors": suite.file_errors,
        "pass_rates": [{"file": str(f), "test": n, "pass_rate": r} for (f, n), r in rates.items()],
        "results": [_test_json(t) for t in suite.tests],
    }


def suite_passed(suite: SuiteResult, min_pass_rate: float = 1.0) -> bool:
    return not suite.file_errors and all(r >= min_pass_rate for r in suite.pass_rates().values())


def write_junit(suite: SuiteResult, path: Path) -> None:
    """JUnit XML as CI servers read it. Its folder is made (``--junit reports/junit.xml`` on a fresh checkout),
    and text from outside is written with its control characters escaped, which XML 1.0 cannot hold: an answer
    or an endpoint's error with an ESC or NUL in it made a file that CI refused to parse."""
    root = ET.Element("testsuite", name="halguru", tests=str(len(suite.tests)),
                      failures=str(sum(not t.passed for t in suite.tests)), errors=str(len(suite.file_errors)))
    for t in suite.tests:
        case = ET.SubElement(root, "testcase", classname=printable(t.file.stem),
                             name=printable(t.name + (f" #{t.attempt}" if t.attempt > 1 else "")),
                             time=f"{t.duration_ms / 1000:.3f}")
        if t.passed:
            continue
        lines = [t.error] if t.error else []
        for turn in t.turns:
            for c in turn.checks:
                if not c.passed:
                    lines.append(f"{_located(t, turn.index, c.expectation)}: turn {turn.index} ({c.expectation}): "
                                 f"{c.why}")
                    if c.diff:
                        lines.append(f"expected (-) vs answer (+):\n{c.diff}")
            if turn.diff:
                lines.append(turn.diff)
        failure = ET.SubElement(case, "failure", message=printable(lines[0] if lines else "failed")[:500])
        failure.text = printable("\n".join(lines))
    for error in suite.file_errors:
        case = ET.SubElement(root, "testcase", classname="halguru", name=printable(error.split(":", 1)[0]))
        ET.SubElement(case, "error", message=printable(error)[:500]).text = printable(error)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
