"""What a replay reproduced, and exactly what it did not and why.

``halguru.agents.replay.replay`` feeds back recorded model outputs and tool results: no model or tool is
called. A plain agent's run, and a team's or a workflow's that started its conversation, come back event for
event (the latter through their driver). A team run that continued a conversation replays through a plain
loop fed the top-level run's records, so its sub-runs, handoffs and checkpoints are missing, for reasons known
in advance; ``explain`` sorts every differing event under its reason, and lists whatever is left as
unexplained. A replay that fails where the run did not (a run cut before it finished has no records past the
cut; a workflow outside its driver has no model calls of its own to feed back) means the run cannot be
replayed: ``Explanation.failed`` says why in one line.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

from halguru.agents.describe import ASK_PREFIX, clip, parent_of
from halguru.agents.events import (
    ApprovalApproved,
    ApprovalRejected,
    ApprovalRequested,
    Checkpoint,
    Event,
    Handoff,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Token,
    ToolCall,
    ToolResult,
)
from halguru.agents.replay import event_line

REASONS = {
    "sub-run": "{n} event(s) of {runs} sub-run(s) were not re-run: replay feeds back only the top-level run's "
               "model outputs and tool results, so each sub-run (a specialist asked with ask_<agent>, a workflow's "
               "agent step) is folded into the result of the tool call or step that started it.",
    "checkpoint": "{n} checkpoint(s) missing: a replay is not stored and not durable, so it saves none.",
    "step": "{n} workflow step event(s) missing: replay runs the recorded outputs through a plain agent, "
            "not the workflow driver.",
    "handoff": "{n} handoff(s) missing: replay runs without the team driver; the handoff tool's recorded result "
               "is fed back, but no member takes over (the next model calls replay as the same agent's).",
    "approval": "{n} event(s) of an approval missing: the decision and the decided call (run or refused) came "
                "before the continuation's first model call, where a replay starts.",
}


def _kind(e: Event, decided: frozenset[str] = frozenset()) -> str:
    """Why ``e`` may be missing from a replay ("" for none); ``decided``: the call ids a human decided."""
    if parent_of(e):
        return "sub-run"
    if isinstance(e, Checkpoint):
        return "checkpoint"
    if isinstance(e, StepStarted | StepFinished):
        return "step"
    if isinstance(e, Handoff) and not e.reason.startswith(ASK_PREFIX):
        return "handoff"
    if isinstance(e, ApprovalApproved | ApprovalRejected | ApprovalRequested):
        return "approval"
    if isinstance(e, ToolCall | ToolResult) and e.call_id in decided:
        return "approval"
    return ""


@dataclass
class Explanation:
    reasons: list[str] = field(default_factory=list)  # what differs, and why
    unexplained: list[str] = field(default_factory=list)  # diff lines (-recorded/+replay) with no known reason
    count: int = 0  # events that differ
    failed: str = ""  # why the run cannot be replayed, one line: the replay failed where the run did not

    @property
    def identical(self) -> bool:
        return self.count == 0 and not self.failed

    def text(self, tree_diff: str) -> str:
        """The comparison for people: empty when the replay matched event for event; only why, when the run cannot
        be replayed (what the replay did past the recorded records, an unknown tool, a limit, is no finding)."""
        if self.identical:
            return ""
        if self.failed:
            return f"This run cannot be replayed: {self.failed}."
        parts = ["What differs and why:", *(f"- {r}" for r in self.reasons)]
        if self.unexplained:
            parts += ["", "Differences with no known reason (a bug: replay should reproduce these):",
                      *self.unexplained]
        return "\n".join([*parts, "", "Event trees (recorded → replay):", tree_diff])


def _finish(events: list[Event]) -> RunFinished | None:
    return next((e for e in reversed(events) if isinstance(e, RunFinished) and not parent_of(e)), None)


def _failure(recorded: list[Event], replayed: list[Event], driven: bool) -> str:
    """Why the replay failed where the recorded run did not ("" when it did not): in one line."""
    end, again = _finish(recorded), _finish(replayed)
    if again is None or again.status not in ("failed", "limited") or (end is not None and end.status == again.status
                                                                       and end.error == again.error):
        return ""
    status = end.status if end is not None else "running"
    if status == "paused":
        return ("it paused for an approval, so it has no answer to reproduce: replay the run that continued it "
                "once the call was decided (`halguru runs list` names it)")
    if status in ("interrupted", "cancelled", "running"):
        started = {e.step_id for e in recorded if isinstance(e, StepStarted) and not parent_of(e)}
        open_steps = started - {e.step_id for e in recorded if isinstance(e, StepFinished) and not parent_of(e)}
        where = f" (in step {', '.join(sorted(open_steps))})" if open_steps else ""
        cut = "is still running or was killed" if status == "running" else f"was {status}"
        return (f"it {cut} before it finished{where}, and a replay feeds back only recorded outputs: there are "
                "none past that point")
    if not driven and any(isinstance(e, StepStarted) for e in recorded):
        return ("a workflow run makes no model calls of its own (its agent steps are sub-runs), so there is "
                "nothing to feed back outside its workflow")
    return f"the replay failed ({clip(again.error or '', 160)})"


def _branches(events: list[Event]) -> dict[str, list[str]]:
    """The event lines of each workflow step (its own events, its agent's sub-run, its tool call), in order, and
    the run's other events under "". Steps that run side by side interleave as their tasks happen to be scheduled
    (a skipped step can come before or after a parallel tool's result), so only the order within a branch is the
    run's; a run without steps is one branch, compared in order."""
    steps = {e.step_id for e in events if isinstance(e, StepStarted | StepFinished) and not parent_of(e)}
    agent_steps: list[StepStarted] = []  # started, their sub-run not seen yet
    sub_runs: dict[str, str] = {}  # sub-run id -> its step
    out: dict[str, list[str]] = {"": []}
    for e in events:
        branch = ""
        if isinstance(e, StepStarted | StepFinished) and not parent_of(e):
            branch = e.step_id
            if isinstance(e, StepStarted) and e.kind == "agent":
                agent_steps.append(e)
        elif parent_of(e):
            if e.run_id not in sub_runs:
                if parent_of(e) in sub_runs:  # asked by a step's agent: that step's
                    sub_runs[e.run_id] = sub_runs[parent_of(e)]
                elif isinstance(e, RunStarted):  # the sub-run of the first started step with its agent
                    step = next((s for s in agent_steps if s.name == e.agent), None)
                    if step is not None:
                        agent_steps.remove(step)
                        sub_runs[e.run_id] = step.step_id
            branch = sub_runs.get(e.run_id, "")
        elif isinstance(e, ToolCall | ToolResult | ApprovalRequested | ApprovalApproved | ApprovalRejected) \
                and e.call_id in steps:  # a tool step's call is named after the step
            branch = e.call_id
        elif isinstance(e, Checkpoint) and e.label.startswith("step ") and e.label.split()[1] in steps:
            branch = e.label.split()[1]
        out.setdefault(branch, []).append(event_line(e))
    return out


def explain(recorded: list[Event], replayed: list[Event]) -> Explanation:
    """Compare a recorded run with its replay event by event (ids, times and token counts aside)."""
    out = Explanation()
    decided = frozenset(e.call_id for e in recorded if isinstance(e, ApprovalApproved | ApprovalRejected))
    kinds = Counter(_kind(e, decided) for e in recorded if not isinstance(e, Token))
    again = Counter(_kind(e, decided) for e in replayed if not isinstance(e, Token))
    for kind, template in REASONS.items():
        missing = kinds[kind] - again[kind]
        if missing > 0:  # a replay through the driver re-runs these; the plain one does not
            runs = len({e.run_id for e in recorded if parent_of(e)}) - len({e.run_id for e in replayed if parent_of(e)})
            out.reasons.append(template.format(n=missing, runs=max(runs, 0)))
            out.count += missing
    explained = {kind for kind in REASONS if kinds[kind] > again[kind]}
    kept_l = _branches([e for e in recorded if not isinstance(e, Token) and _kind(e, decided) not in explained])
    kept_r = _branches([e for e in replayed if not isinstance(e, Token) and _kind(e, decided) not in explained])
    rest = [line for branch in {**kept_l, **kept_r}
            for line in difflib.unified_diff(kept_l.get(branch, []), kept_r.get(branch, []), "recorded", "replay",
                                             lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    out.count += len(rest)
    out.failed = _failure(recorded, replayed, driven=any(isinstance(e, StepStarted) for e in replayed))
    out.unexplained = [] if out.failed else rest  # past a cut, a replay differs for that reason alone
    return out


def verdict(same_answer: bool, why: Explanation) -> tuple[str, bool]:
    """A replay's outcome in one line, and whether it reproduced the run: its answer, and no event that differs
    for no known reason (`halguru dev`'s F7 and `halguru logs replay` say the same)."""
    if why.failed:  # no answer to compare: say why, not "identical answer" of two empty ones
        return f"cannot be replayed: {why.failed}", False
    line = ("identical answer" if same_answer else "the answer DIFFERS") + (
        ", event for event" if why.identical else f", {why.count} event(s) differ")
    if why.unexplained:  # the same answer by other means is no reproduction: the diff lists what went wrong
        line += ", some for no known reason"
    return line, same_answer and not why.unexplained
