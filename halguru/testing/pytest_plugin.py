"""pytest plugin (entry point ``pytest11``): fixtures for running agents, and collection of
conversation tests (``tests/test_*.yaml`` next to an ``agent.yaml``) as pytest items.

YAML tests run like ``halguru test`` in its default mode: replay where a recording exists,
live otherwise. ``--halguru-mode=live|replay|record`` changes that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--halguru-mode", default="auto", choices=["auto", "live", "replay", "record"],
                     help="how halguru conversation tests get their answers (default: auto)")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if (file_path.suffix in (".yaml", ".yml") and file_path.name.startswith("test_")
            and file_path.parent.name == "tests" and (file_path.parent.parent / "agent.yaml").exists()):
        return ConversationFile.from_parent(parent, path=file_path)
    return None


class ConversationFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from halguru.agents.loader import load_agent
        from halguru.testing.runner import tool_names
        from halguru.testing.spec import load_test_file

        # the tools the expectations name are checked, as `halguru test` does (a misspelt one always passed)
        for case in load_test_file(self.path, tool_names(load_agent(self.path.parent.parent))).tests:
            yield ConversationItem.from_parent(self, name=case.name, case=case)


class ConversationItem(pytest.Item):
    def __init__(self, *, case: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from halguru.agents.loader import load_agent
        from halguru.blocking import run_blocking
        from halguru.testing.recording import load_recording, recording_path, save_recording
        from halguru.testing.runner import run_test

        mode = self.config.getoption("--halguru-mode")
        agent = load_agent(self.path.parent.parent)
        cassettes = load_recording(recording_path(self.path))
        if mode == "auto":
            mode = "replay" if self.case.name in cassettes else "live"
        result, recorded = run_blocking(run_test(agent, self.case, file=self.path, mode=mode,
                                                cassette=cassettes.get(self.case.name), model=None))
        if recorded is not None:
            save_recording(recording_path(self.path), {self.case.name: recorded}, agent.name,
                           agent.spec.model)
        if not result.passed:
            raise ConversationFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConversationFailure):
            return excinfo.value.describe()
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"conversation: {self.name}"


class ConversationFailure(Exception):
    def __init__(self, result: Any):
        super().__init__(result.name)
        self.result = result

    def describe(self) -> str:
        r = self.result
        lines = [f"conversation test {r.name!r} failed ({r.mode})"]
        if r.error:
            lines.append(r.error)
        for turn in r.turns:
            for c in turn.checks:
                if not c.passed:
                    answer = turn.outcome.answer if turn.outcome else ""
                    run = turn.outcome.run_id if turn.outcome else "-"
                    lines.append(f"turn {turn.index} {c.expectation}: expected {c.expected!r}: {c.why} "
                                 f"(answer {answer!r}, run {run})")
                    if c.diff:
                        lines.append(f"expected (-) vs answer (+):\n{c.diff}")
            if turn.diff:
                lines.append(turn.diff)
        return "\n".join(lines)


@pytest.fixture
def halguru_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HALGURU_HOME for one test (trace store, registered models)."""
    from halguru.config import reset_settings

    home = tmp_path / "halguru-home"
    monkeypatch.setenv("HALGURU_HOME", str(home))
    reset_settings()
    return home


@pytest.fixture
def halguru_plugin(halguru_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Load a plugin that is not installed, as it would load installed: ``halguru_plugin(halguru_weather)`` (the
    module, or its import name; ``name=`` its entry point's name, default the module's less ``halguru_``).
    Its hooks are checked and its names registered as an installed plugin's are; built-in plugins load too,
    installed third-party ones do not (HALGURU_LOAD_PLUGINS is empty meanwhile). Forgotten after the test."""
    from halguru.plugins.manager import load_test_plugin, reset_plugin_manager

    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "")
    reset_plugin_manager()
    yield load_test_plugin
    reset_plugin_manager()


@pytest.fixture
def halguru_agent() -> Callable[[str | Path], Any]:
    """Load an agent project: ``agent = halguru_agent("path/to/project")``."""
    from halguru.agents.loader import load_agent

    return load_agent


@pytest.fixture
def halguru_run() -> Callable[..., Any]:
    """Run an agent and get a RunResult: ``result = halguru_run(agent, "Hi", model=...)``."""
    from halguru.agents.runtime import run_sync

    return run_sync


@pytest.fixture
def scripted_model() -> Callable[..., Any]:
    """Make a deterministic model: ``scripted_model(["Hello!", {"tool_calls": [...]}])``."""
    from halguru.models.scripted import ScriptedModel

    return ScriptedModel
