"""Running conversation tests: live, recording, or replaying recorded answers."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from halguru.agents.loader import Agent, load_agent
from halguru.blocking import run_blocking
from halguru.errors import HalguruError
from halguru.models.base import SEED_MIN
from halguru.testing.expectations import Check, TurnOutcome, check_turn
from halguru.testing.recording import (
    Cassette,
    RecordingModel,
    RecordingRetriever,
    ReplayModel,
    ReplayRetriever,
    load_recording,
    recording_path,
    recording_tool,
    replay_tool,
    save_recording,
)
from halguru.testing.spec import (
    ApproveEdited,
    Decision,
    Reject,
    TestCase,
    TestFormatError,
    Turn,
    load_test_file,
    test_files,
)
from halguru.tools.decorator import Tool

MAX_REPEAT = 10_000

if TYPE_CHECKING:
    from halguru.agents.events import Event
    from halguru.agents.runtime import RunResult

Mode = Literal["auto", "live", "record", "replay"]
Progress = Callable[[str, str | int], None]  # (event, value): tests, plan, loading, model, test, done


@dataclass
class TurnResult:
    index: int
    user: str
    outcome: TurnOutcome | None
    checks: list[Check]
    diff: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class TestResult:
    __test__ = False  # not a pytest test class

    file: Path
    name: str
    attempt: int
    mode: str
    turns: list[TurnResult] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.turns)


@dataclass
class SuiteResult:
    tests: list[TestResult]
    file_errors: list[str]
    unrecorded: list[str] = field(default_factory=list)  # --record: tests that failed, so kept their old recording
    refused: list[Path] = field(default_factory=list)  # the files of file_errors
    rerun_all: bool = False  # ``only`` named no test there is: every test ran

    @property
    def passed(self) -> bool:
        return not self.file_errors and all(t.passed for t in self.tests)

    def pass_rates(self) -> dict[tuple[Path, str], float]:
        rates: dict[tuple[Path, str], list[bool]] = {}
        for t in self.tests:
            rates.setdefault((t.file, t.name), []).append(t.passed)
        return {k: sum(v) / len(v) for k, v in rates.items()}


def _with_tools(agent: Agent, wrap: Callable[[Tool], Tool], knowledge: Callable[[Any], Any] | None = None) -> Agent:
    """The agent (and each agent its team or workflow runs) with its tools, and its knowledge searches when
    ``knowledge`` is given, wrapped for recording or replay."""
    def one(a: Agent) -> Agent:
        wrapped = Agent(spec=a.spec, tools={t.name: wrap(t) for t in a.tools.values()}, path=a.path)
        if knowledge is not None and a.knowledge is not None:
            wrapped.knowledge = knowledge(a.knowledge)
        return wrapped

    test_agent = one(agent)
    if agent.driver is not None:  # team members, tool steps and each workflow step's agent
        test_agent.driver = agent.driver.with_agents(lambda a: test_agent if a is agent else one(a))
    return test_agent


def tool_names(agent: Agent) -> set[str] | None:
    """Every tool a run of ``agent`` may call: its own, its team members' and their handoff and ask tools, its
    workflow steps' agents'. None when some are known only once it runs (MCP servers' tools)."""
    if agent.uses_mcp():
        return None
    names = {name for a in agent.involved() for name in a.tools}
    team = agent.team
    if team is not None:
        names.update(spec.name for member in team.members.values() for spec in member.team_tool_specs)
    return names


def _replay_retriever(searches: list[dict[str, Any]], cursor: list[int], live: Any) -> ReplayRetriever:
    return ReplayRetriever(searches, cursor, live.top_k)


def _single_model(agent: Agent) -> bool:
    """A plain agent, or a team whose members all name the lead's model: one model object serves the run."""
    if agent.workflow is not None:
        return False
    return all(a.spec.model == agent.spec.model for a in agent.involved())


async def run_test(agent: Agent, case: TestCase, *, file: Path, mode: Mode, cassette: Cassette | None,
                   model: str | None, attempt: int = 1) -> tuple[TestResult, Cassette | None]:
    """One conversation test; returns its result and, when recording, what was recorded."""
    from halguru.agents.runtime import run_to_result
    from halguru.models.base import Model, PerAgentModel
    from halguru.models.registry import get_model
    from halguru.testing.judge import judge_answer

    result = TestResult(file=file, name=case.name, attempt=attempt, mode=mode)
    model_ref = model or agent.spec.model
    recorded = Cassette() if mode == "record" else None
    wrap: Callable[[Tool], Tool] = lambda t: t  # noqa: E731
    knowledge: Callable[[Any], Any] | None = None
    model_obj: Model | PerAgentModel
    if mode == "replay":
        if cassette is None:
            result.error = (f"no recording for this test in {recording_path(file).name}; "
                            f"record it with `halguru test {file.parent.parent} --record`")
            return result, None
        replay = ReplayModel(cassette, name=model_ref)
        model_obj = replay if model or _single_model(agent) else PerAgentModel(lambda _: replay)
        cursor, searches = [0], [0]
        wrap = lambda t: replay_tool(t, cassette, cursor)  # noqa: E731
        if cassette.retrievals is not None:  # an older recording without them searches live
            knowledge = partial(_replay_retriever, cassette.retrievals, searches)
    else:
        if model or _single_model(agent):
            found = get_model(model_ref)
            model_obj = RecordingModel(found, recorded) if recorded is not None else found
        else:  # a team or workflow without --model: each agent keeps its own model, all in one recording
            models: dict[str, Any] = {}

            def choose(reference: str) -> Any:
                if reference not in models:
                    found = get_model(reference)
                    models[reference] = RecordingModel(found, recorded) if recorded is not None else found
                return models[reference]

            model_obj = PerAgentModel(choose)
        if recorded is not None:
            wrap = lambda t: recording_tool(t, recorded)  # noqa: E731
            knowledge = lambda k: RecordingRetriever(k, recorded)  # noqa: E731
    test_agent = _with_tools(agent, wrap, knowledge)
    conversation: str | None = None
    judged = 0
    started = time.perf_counter()
    sampling = _attempt_sampling(agent, attempt) if mode == "live" else None
    for index, turn in enumerate(case.turns, 1):
        turn_started = time.perf_counter()
        metadata = {"test": True, "test_case": f"{file.name}::{case.name}"}
        run = await run_to_result(test_agent, turn.user, conversation, model=model_obj, metadata=metadata,
                                  sampling=sampling)
        run, events, undecided = await _decided(run, turn, test_agent, model_obj, metadata)
        outcome = TurnOutcome.from_events(events, (time.perf_counter() - turn_started) * 1000)
        if undecided and outcome.status == "ok":
            outcome.status, outcome.error = "failed", (f"the turn did not wait for an approval that decide: has "
                                                       f"{len(undecided)} more decision(s) for")
        conversation = run.conversation_id
        if turn.expect.judge is not None:
            judge = turn.expect.judge
            if mode == "replay":
                scores = (cassette.judge_scores if cassette else [])
                if judged < len(scores):
                    outcome.judge_score = scores[judged]["score"]
                else:
                    outcome.judge_error = "no recorded judge score; re-record with --record"
            else:
                try:
                    outcome.judge_score = await judge_answer(judge.model, judge.rubric, turn.user, outcome.answer)
                except HalguruError as exc:
                    outcome.judge_error = str(exc)
                if recorded is not None and outcome.judge_score is not None:
                    recorded.judge_scores.append({"score": outcome.judge_score})
            judged += 1
        diff = model_obj.mismatch.diff if isinstance(model_obj, ReplayModel) and model_obj.mismatch else ""
        result.turns.append(TurnResult(index, turn.user, outcome, check_turn(turn.expect, outcome), diff))
        if outcome.status != "ok":
            break  # later turns depend on this one
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result, recorded


async def _decided(run: RunResult, turn: Turn, agent: Agent, model: Any,
                   metadata: dict[str, Any]) -> tuple[RunResult, list[Event], list[Decision]]:
    """A turn's run continued through its ``decide:`` list, as a human's decisions would: the last run, every
    run's events, and the decisions left over (the turn did not wait for them)."""
    from halguru.agents.runtime import collect_result
    from halguru.orchestration.approvals import resume_events

    events, undecided = list(run.events), list(turn.decide)
    while run.status == "paused" and undecided:
        decision = undecided.pop(0)
        edit = decision.approve if isinstance(decision, ApproveEdited) else None
        reason = decision.reject if isinstance(decision, Reject) else None
        run = await collect_result(resume_events(run.run_id, edit, reject=reason, model=model, metadata=metadata,
                                                 agent=agent))
        events += run.events
    return run, events, undecided


def _named(only: set[tuple[str, str]], file: Path, case: TestCase) -> bool:
    where = str(file.resolve())
    return (where, case.name) in only or (where, "") in only


def _selected(case: TestCase, file: Path, pattern: str | None) -> bool:
    if not pattern:
        return True
    haystack = f"{file.stem}::{case.name}".lower()
    return pattern.lower() in haystack or fnmatch.fnmatch(haystack, pattern.lower())


async def run_suite(project: str | Path, *, mode: Mode = "auto", pattern: str | None = None, repeat: int = 1,
                    model: str | None = None, files: list[Path] | None = None,
                    progress: Progress | None = None, concurrency: int = 1,
                    into: SuiteResult | None = None, only: set[tuple[str, str]] | None = None) -> SuiteResult:
    """Every test of a project (or the given files). A malformed file is reported; the others still run.

    ``only``: the (resolved test file, test name) pairs to run (a name of ``""``: all of that file's), as
    `halguru test --failed` gives them; when none of them is a test now (renamed, or the files fixed since),
    every test runs and ``rerun_all`` says so.

    ``progress`` is told how many tests will run (``tests``; ``plan``: how many live and replayed), when a local
    model loads (``loading``: only when a test runs live or records) and as each test starts (``test``) and ends
    (``done``). ``concurrency``: how many tests run at once. ``into``: the result to fill as each test ends, so
    what a Ctrl-C leaves of the run can still be reported.
    """
    from halguru.testing.evaluate import warm_up

    if repeat > MAX_REPEAT:  # the plan lists every attempt: 10**20 of them filled the memory, never starting
        raise HalguruError(f"--repeat {repeat}: at most {MAX_REPEAT} runs of each test")
    agent = load_agent(project)
    assert agent.path is not None
    suite = into if into is not None else SuiteResult(tests=[], file_errors=[])
    planned: list[tuple[Path, dict[str, Cassette], list[tuple[TestCase, Mode]]]] = []
    tools = tool_names(agent)
    loaded: list[tuple[Path, list[TestCase]]] = []
    for file in files or test_files(agent.path):
        try:
            loaded.append((file, load_test_file(file, tools).tests))
        except TestFormatError as exc:
            suite.file_errors.append(str(exc))
            suite.refused.append(file)
    if only is not None and not any(_named(only, file, case) for file, cases in loaded for case in cases):
        only, suite.rerun_all = None, True
    for file, cases in loaded:
        cassettes = load_recording(recording_path(file)) if mode in ("auto", "replay", "record") else {}
        chosen: list[tuple[TestCase, Mode]] = [
            (case, "replay" if mode == "auto" and case.name in cassettes else "live" if mode == "auto" else mode)
            for case in cases if _selected(case, file, pattern) and (only is None or _named(only, file, case))]
        planned.append((file, cassettes, chosen))
    runs = [(case_mode, _attempts(case_mode, repeat)) for _, _, chosen in planned for _, case_mode in chosen]
    live = any(case_mode in ("live", "record") for case_mode, _ in runs)
    # Only a run that calls the model takes long enough to need progress (replays take milliseconds).
    notify: Progress = progress if progress is not None and live else (lambda event, value: None)
    notify("tests", sum(times for _, times in runs))
    notify("plan", _plan(runs))
    if live and agent.workflow is None:
        await warm_up(model or agent.spec.model, notify)  # seconds for a local model: say so, once
    jobs = [(file, cassettes, case, case_mode, attempt) for file, cassettes, chosen in planned
            for case, case_mode in chosen for attempt in range(1, _attempts(case_mode, repeat) + 1)]
    results: list[TestResult | None] = [None] * len(jobs)
    left = {file: sum(job[0] == file for job in jobs) for file, _, _ in planned}
    new_recordings: dict[Path, dict[str, Cassette]] = {file: {} for file, _, _ in planned}
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, file: Path, cassettes: dict[str, Cassette], case: TestCase, case_mode: Mode,
                  attempt: int) -> None:
        times = _attempts(case_mode, repeat)
        label = f"{file.stem}::{case.name}" + (f" #{attempt}" if times > 1 else "")
        async with limit:
            notify("test", label)
            result, recorded = await run_test(agent, case, file=file, mode=case_mode,
                                              cassette=cassettes.get(case.name), model=model, attempt=attempt)
        results[index] = result
        suite.tests = [r for r in results if r is not None]
        notify("done", f"{label} {'passed' if result.passed else 'FAILED'}")
        if recorded is not None and result.passed:
            new_recordings[file][case.name] = recorded
        elif recorded is not None:  # a failing run would replace the good recording it is tested against
            suite.unrecorded.append(label)
        left[file] -= 1
        if not left[file] and new_recordings[file]:  # the file's tests are done: keep what they recorded
            save_recording(recording_path(file), new_recordings[file], agent.name, model or agent.spec.model)

    # ``concurrency`` tests at a time (in file order; results too): an eval of hundreds of tests against an
    # endpoint that answers in seconds took hundreds of seconds one by one
    await asyncio.gather(*(one(i, *job) for i, job in enumerate(jobs)))
    return suite


def _attempts(case_mode: Mode, repeat: int) -> int:
    """How many times a test runs: ``repeat`` live, once recorded or replayed (a recording answers the same way
    every time, so five replays of it gave five identical rows and a pass rate of nothing)."""
    return repeat if case_mode == "live" else 1


def _attempt_sampling(agent: Agent, attempt: int) -> dict[str, Any] | None:
    """A live ``--repeat`` attempt's own seed (the agent's seed, plus one per attempt after the first), so a pass
    rate samples the model; with one seed for all, attempts differed only by the KV cache's rounding (the
    assistant template passed its first attempt and failed the others). An agent without a seed samples anew."""
    seed = agent.spec.sampling.seed
    # wrapped within the int64 a seed is (an agent's seed of 2**63 - 1 and a second attempt)
    return {"seed": (seed + attempt - 1 - SEED_MIN) % 2**64 + SEED_MIN} if seed is not None and attempt > 1 else None


def _plan(runs: list[tuple[Mode, int]]) -> str:
    """``2 test(s) live``, or ``3 test(s): 1 live, 2 replayed`` when some replay their recordings."""
    live = sum(times for case_mode, times in runs if case_mode in ("live", "record"))
    replayed = sum(times for _, times in runs) - live
    return f"{live} test(s) live" if not replayed else f"{live + replayed} test(s): {live} live, {replayed} replayed"


def run_suite_sync(project: str | Path, **kwargs: Any) -> SuiteResult:
    return run_blocking(run_suite(project, **kwargs))
