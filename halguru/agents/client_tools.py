"""Tools the caller runs (the OpenAI endpoint's client-side functions, as an OpenAI client sends them).

They are offered to the model beside the agent's own tools. A reply that calls one ends the run once the reply's
other calls (the agent's own, run here) are done: the run ends ``ok`` with those calls left to the caller
(``LoopEnd.client_calls``, ``tool_call`` events marked ``client``), and the caller's next run starts with their
results (``run(tool_results=...)``) instead of a user message.
"""

from __future__ import annotations

from dataclasses import dataclass

from halguru.models.base import ModelRequest, ToolSpec


@dataclass(frozen=True)
class ClientTools:
    """The caller's tools and how the model may use them.

    ``choice``: ``auto`` (the model decides), ``none`` (not offered), ``required`` (the run's first model call
    must call a tool, the agent's or the caller's, as agent.yaml's ``tool_choice: required``) or the name of one
    of ``specs`` (the first model call calls it). ``parallel`` False: at most one tool call per model reply."""

    specs: tuple[ToolSpec, ...]
    choice: str = "auto"
    parallel: bool = True

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    @property
    def offered(self) -> list[ToolSpec]:
        """What the model is shown: nothing for ``none``."""
        return [] if self.choice == "none" else list(self.specs)

    def runs(self, name: str) -> bool:
        """Whether a call of ``name`` is the caller's to run."""
        return any(spec.name == name for spec in self.offered)

    def shape(self, request: ModelRequest, steps: int) -> ModelRequest:
        """The turn's ``steps``-th model request with the caller's choice applied (on the first call only)."""
        request.parallel_tool_calls = self.parallel
        if steps > 1 or self.choice in ("auto", "none") or not request.tools:
            return request
        if self.choice != "required":  # one function named: only it is offered, and it must be called
            request.tools = [spec for spec in self.specs if spec.name == self.choice]
        request.tool_choice = "required"
        return request
