"""`halguru test` and `halguru eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

import typer

if TYPE_CHECKING:
    from halguru.errors import HalguruError
    from halguru.testing.runner import SuiteResult


def register(app: typer.Typer) -> None:
    @app.command("test")
    def test_(
        path: Path = typer.Argument(Path("."), help="Agent project folder (tests are tests/test_*.yaml)."),
        pattern: str | None = typer.Option(None, "-k", help="Only tests whose 'file::name' contains this."),
        record: bool = typer.Option(False, "--record", help="Run live and record answers and tool results."),
        replay: bool = typer.Option(False, "--replay", help="Only replay recordings; no model is called."),
        live: bool = typer.Option(False, "--live", help="Ignore recordings; call the model."),
        repeat: int = typer.Option(1, "--repeat", min=1,
                                   help="Run each test N times (stochastic models; at most 10000)."),
        min_pass_rate: float = typer.Option(1.0, "--min-pass-rate", min=0, max=1,
                                            help="With --repeat: the share of runs a test must pass."),
        model: str | None = typer.Option(None, "--model", "-m", help="Override the agent's model."),
        junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML to this file."),
        concurrency: int = typer.Option(1, "--concurrency", "-j", min=1,
                                        help="How many tests run at once (a model's slots, an endpoint's limit)."),
        json_output: bool = typer.Option(False, "--json", help="Print results as JSON."),
        failed: bool = typer.Option(False, "--failed", "--lf",
                                    help="Only the tests that failed when they last ran (all when none did)."),
    ) -> None:
        """Run an agent's conversation tests. Default: replay where a recording exists, else live."""
        from halguru.testing.last_failed import last_failed

        only = last_failed(path) if failed else None
        if failed and not only:
            typer.echo(f"note: no failed test remembered for {path}: running them all", err=True)
        suite, interrupted = _run_tests(path, _mode(record, replay, live, repeat), pattern=pattern, repeat=repeat,
                                        model=model, concurrency=concurrency, only=only or None)
        if suite.rerun_all:
            typer.echo("note: none of the tests that failed last is there now: running them all", err=True)
        _remember(path, suite, min_pass_rate)
        if repeat > 1 and (replayed := sum(t.mode == "replay" for t in suite.tests)):
            typer.echo(f"note: {replayed} test(s) replayed their recording once (a replay answers the same way "
                       f"every time); --live runs each {repeat} times on the model", err=True)
        _report_tests(suite, interrupted, path=path, pattern=pattern, min_pass_rate=min_pass_rate, junit=junit,
                      json_output=json_output)

    @app.command("eval")
    def eval_(
        path: Path = typer.Argument(Path("."), help="Agent project folder."),
        models: list[str] = typer.Option(..., "--models", "--model", "-m",
                                         help="Model references to compare: comma-separated, or the option "
                                              "repeated (-m a -m b)."),
        pattern: str | None = typer.Option(None, "-k", help="Only tests whose 'file::name' contains this."),
        repeat: int = typer.Option(1, "--repeat", min=1, help="Run each test N times per model (at most 10000)."),
        concurrency: int = typer.Option(1, "--concurrency", "-j", min=1,
                                        help="How many tests run at once (a model's slots, an endpoint's limit)."),
        json_output: bool = typer.Option(False, "--json", help="Print results as JSON."),
    ) -> None:
        """Run the conversation tests against several models and compare them."""
        _evaluate(path, [m.strip() for given in models for m in given.split(",") if m.strip()], pattern=pattern,
                  repeat=repeat, concurrency=concurrency, json_output=json_output)


def _remember(path: Path, suite: SuiteResult, min_pass_rate: float) -> None:
    """Keep which tests failed for `--failed`; a record that cannot be written is a warning, not a failed run."""
    from halguru.testing.last_failed import remember

    ran = {(str(file.resolve()), name): rate >= min_pass_rate for (file, name), rate in suite.pass_rates().items()}
    try:
        remember(path, ran, suite.refused)
    except OSError as exc:
        typer.echo(f"Warning: cannot keep which tests failed (for --failed): {exc.strerror or exc}", err=True)


def _run_tests(path: Path, mode: Literal["auto", "live", "record", "replay"], *, pattern: str | None, repeat: int,
               model: str | None, concurrency: int,
               only: set[tuple[str, str]] | None = None) -> tuple[SuiteResult, bool]:
    """Run the suite with live progress on stderr (a local model's live run takes minutes); returns the tests
    that finished and whether Ctrl-C cut it short."""
    from rich.console import Console

    from halguru.blocking import run_blocking
    from halguru.cli.run_once import json_wire
    from halguru.testing.report import LiveProgress
    from halguru.testing.runner import SuiteResult, run_suite

    suite, interrupted = SuiteResult(tests=[], file_errors=[]), False
    # What the agents' tools print goes to stderr: stdout is the report's (`--json | jq`).
    with json_wire(), LiveProgress(Console(stderr=True, highlight=False, emoji=False)) as progress:
        try:
            run_blocking(run_suite(path, mode=mode, pattern=pattern, repeat=repeat, model=model,
                                  progress=progress, concurrency=concurrency, into=suite, only=only))
        except KeyboardInterrupt:  # Ctrl-C: the tests that finished are reported (and in --junit), as pytest does
            interrupted = True
    return suite, interrupted


def _report_tests(suite: SuiteResult, interrupted: bool, *, path: Path, pattern: str | None, min_pass_rate: float,
                  junit: Path | None, json_output: bool) -> NoReturn:
    """Report the suite (table or JSON, then JUnit) and exit: 0 all passed, 1 a failure, 130 interrupted."""
    from halguru.testing.report import print_report, suite_json, suite_passed, write_junit

    if interrupted and not suite.tests:  # said, as with tests that finished (it exited 130 without a word)
        typer.echo("interrupted: no test had finished", err=True)
        raise typer.Exit(130)
    if not suite.tests and not suite.file_errors:
        raise _no_tests(path, pattern)
    if json_output:
        typer.echo(json.dumps(suite_json(suite, min_pass_rate), indent=2, ensure_ascii=False))
    else:
        from halguru.cli.table import print_rich_table, stdout_console

        print_report(suite, stdout_console(highlight=False, emoji=False), min_pass_rate, print_rich_table)
    if junit is not None:  # after the report: a path it cannot write must not hide the results
        write_junit(suite, junit)
    for label in suite.unrecorded:
        typer.echo(f"not recorded: {label} failed; its earlier recording (if any) is kept", err=True)
    if interrupted:
        typer.echo(f"interrupted: the {len(suite.tests)} test(s) that finished are reported", err=True)
        raise typer.Exit(130)
    raise typer.Exit(0 if suite_passed(suite, min_pass_rate) else 1)


def _evaluate(path: Path, names: list[str], *, pattern: str | None, repeat: int, concurrency: int,
              json_output: bool) -> None:
    """Score each model on the tests and report them; Ctrl-C reports the scores so far (exit 130), a model
    that failed is one line each (exit 1)."""
    from rich.console import Console

    from halguru.blocking import run_blocking
    from halguru.testing.evaluate import ModelScore, evaluate
    from halguru.testing.report import LiveProgress

    err = Console(stderr=True, highlight=False, emoji=False)  # `openai:x` is no emoji code
    scores: list[ModelScore] = []
    interrupted = False
    from halguru.cli.run_once import json_wire

    with json_wire(), LiveProgress(err) as progress:  # tools' prints to stderr, as in `halguru test`
        try:
            run_blocking(evaluate(path, names, pattern=pattern, repeat=repeat, progress=progress,
                                 concurrency=concurrency, into=scores))
        except KeyboardInterrupt:  # Ctrl-C: the scores so far are reported, as `halguru test` does
            interrupted = True
    if interrupted:
        if scores:
            _report_scores(scores, json_output)
        err.print(f"interrupted: {len(scores)} model(s) scored on the tests that finished", markup=False)
        raise typer.Exit(130)
    if scores and not any(s.tests or s.error for s in scores):  # as `halguru test` says it
        raise _no_tests(path, pattern)
    failed = [s for s in scores if s.error]
    _report_scores(scores, json_output)
    for s in failed:
        err.print(f"Error: {s.model}: {s.error}", markup=False, soft_wrap=True)  # one line, any width
    if failed:
        raise typer.Exit(1)


def _no_tests(path: Path, pattern: str | None) -> HalguruError:
    """The one-line error of a run that found no test (`test` and `eval` say it alike)."""
    from halguru.errors import HalguruError

    if not pattern:
        return HalguruError(f"no conversation tests found in {path / 'tests'} (files named test_*.yaml)")
    return HalguruError(f"no test matches -k {pattern!r} (a part of 'file::name', any case, or a glob){_named(path)}")


def _named(path: Path, limit: int = 10) -> str:
    """``; its tests: test_x::a, test_x::b`` (the first ``limit``): what -k could have named."""
    from halguru.errors import HalguruError
    from halguru.testing.spec import load_test_file, test_files

    folder = path.parent if path.is_file() else path
    labels = []
    for file in test_files(folder):
        try:
            labels += [f"{file.stem}::{case.name}" for case in load_test_file(file).tests]
        except HalguruError:  # a refused file is reported as such elsewhere
            continue
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return f"; its tests: {', '.join(labels[:limit])}{more}" if labels else ""


def _report_scores(scores: list, json_output: bool) -> None:
    """The score table, or with ``--json`` the scores as JSON."""
    if json_output:
        typer.echo(json.dumps([s.to_json() for s in scores], indent=2))
    else:
        _print_scores(scores)


def _print_scores(scores: list) -> None:
    from rich.markup import escape
    from rich.table import Table

    from halguru.cli.table import print_rich_table, stdout_console

    table = Table("model", "pass rate", "median latency", "tokens (in+out)", "tool-call validity", "cost",
                  box=None, header_style="bold")
    for s in scores:
        if s.error:
            table.add_row(escape(s.model), "[red]error[/]", "-", "-", "-", "-")
            continue
        latency = f"{s.median_latency_ms / 1000:.2f}s" if s.median_latency_ms is not None else "-"
        validity = (f"{s.tool_call_validity:.0%} ({s.valid_tool_calls}/{s.tool_calls})"
                    if s.tool_call_validity is not None else "no calls")
        cost = f"${s.cost_usd:.4f}" if s.cost_usd is not None else "unknown"
        table.add_row(escape(s.model), f"{s.pass_rate:.0%} ({s.passed}/{s.tests})", latency,
                      f"{s.prompt_tokens}+{s.completion_tokens}", validity, cost)
    print_rich_table(table, stdout_console(emoji=False))


def _mode(record: bool, replay: bool, live: bool, repeat: int) -> Literal["auto", "live", "record", "replay"]:
    """How `halguru test` runs, from its flags (a combination that means nothing is one line)."""
    from halguru.errors import HalguruError

    if sum((record, replay, live)) > 1:
        raise HalguruError("choose one of --record, --replay and --live")
    if record and repeat > 1:
        raise HalguruError("--record records each test once; --repeat runs tests several times (with --live)")
    if replay and repeat > 1:
        raise HalguruError("--replay answers each test as recorded, the same every time; --repeat samples the "
                           "model several times (with --live)")
    return "record" if record else "replay" if replay else "live" if live else "auto"
