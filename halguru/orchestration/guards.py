"""The state of one team run: who holds the conversation, and the guards that keep it bounded.

Every guard ends the run with status ``limited`` and a fatal ``limit`` error event saying which
limit was hit, so a team run never hangs or loops forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halguru.orchestration.team import Member, Team


@dataclass
class TeamRun:
    team: Team
    current: Member = field(init=False)
    handoffs: int = 0
    # (from, to) handoffs since the last progress (a real tool result): a repeat is a loop.
    since_progress: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.current = self.team.members[self.team.lead]

    def start_with(self, active: str | None) -> None:
        """The conversation continues with the agent that held it last (if it is still a member)."""
        if active and active in self.team.members:
            self.current = self.team.members[active]

    def budget_problem(self, steps: int, tokens: int, agent_steps: int) -> str | None:
        """Which limit this run has reached before its next model call, if any."""
        s = self.team.settings
        if steps >= s.max_steps:
            return f"team run stopped after {s.max_steps} model calls (team.max_steps)"
        if tokens >= s.max_tokens:
            return f"team run stopped after {tokens} tokens (team.max_tokens is {s.max_tokens})"
        limit = self.current.agent.spec.limits.max_steps
        if agent_steps >= limit:
            return (f"{self.current.agent.name} made {limit} model calls without answering or handing off "
                    "(its limits.max_steps)")
        return None

    def progress(self) -> None:
        self.since_progress.clear()

    def hand_off(self, to: str) -> str | None:
        """Move the conversation to ``to``; return why the run must stop instead, if it must."""
        pair = (self.current.agent.name, to)
        if self.handoffs >= self.team.settings.max_handoffs:
            return f"handoff {pair[0]} → {to} refused: {self.handoffs} handoffs already (team.max_handoffs)"
        if pair in self.since_progress:
            chain = " → ".join([self.since_progress[0][0], *(b for _, b in self.since_progress), to])
            return f"handoff loop detected: {chain} with no progress in between"
        self.handoffs += 1
        self.since_progress.append(pair)
        self.current = self.team.members[to]
        return None

    def ask_allowed(self, name: str) -> str | None:
        if self.handoffs >= self.team.settings.max_handoffs:
            return f"call to specialist {name} refused: {self.handoffs} handoffs already (team.max_handoffs)"
        self.handoffs += 1
        return None
