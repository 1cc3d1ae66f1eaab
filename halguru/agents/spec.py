"""agent.yaml: the definition of an agent, validated by pydantic.

Errors name the file, the field and the line: ``agent.yaml:7: tools.0: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from halguru.errors import AgentSpecError
from halguru.yamlfile import first_problem, read_mapping

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(default=0.2, ge=0, le=2, description="0 = most deterministic")
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int | None = Field(default=None, description="fixed seed for reproducible sampling")
    repeat_penalty: float = Field(default=1.1, ge=1, le=2, description="discourages loops (local models)")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(default=6, ge=1, le=100, description="model calls per run (each tool round is one)")
    max_tokens: int = Field(default=512, ge=1, description="tokens the model may generate per call")
    timeout: float = Field(default=300, gt=0, description="seconds a whole run may take")


class RetrievalSettings(BaseModel):
    """How an agent with ``knowledge:`` uses it."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "tool", "both"] = Field(
        default="auto", description="auto: top chunks go into the prompt; tool: the model calls search_knowledge")
    top_k: int = Field(default=4, ge=1, le=50, description="chunks retrieved per knowledge base")
    search: Literal["hybrid", "vector", "fts"] = Field(default="hybrid", description="search mode")
    cite: bool = Field(default=True, description="append the cited sources to the answer")


class TeamSettings(BaseModel):
    """Other agents this one works with, and the guards of a team run (see README, "Teams and orchestration")."""

    model_config = ConfigDict(extra="forbid")

    handoffs: list[str] = Field(
        default=[], description="agent folders (relative to this agent.yaml) this agent may hand the "
        "conversation to, each as a tool handoff_to_<name>; they can hand it back")
    specialists: list[str] = Field(
        default=[], description="agent folders this agent may call as tools (ask_<name>), then compose "
        "their answers; the specialist does not keep the conversation")
    max_handoffs: int = Field(default=6, ge=0, le=100, description="handoffs (and specialist calls) per run")
    max_steps: int = Field(default=20, ge=1, le=500, description="model calls per run, across all agents")
    max_tokens: int = Field(default=20000, ge=1, description="prompt + completion tokens per run, all agents")
    timeout: float = Field(default=600, gt=0, description="seconds a whole team run may take")


class AgentSpec(BaseModel):
    """The contents of agent.yaml."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"title": "halguru agent.yaml"})

    name: str = Field(pattern=NAME_PATTERN, description="agent name, used in traces and URLs")
    description: str = Field(default="", description="one line: what the agent is for")
    model: str = Field(
        min_length=1,
        description="a model name from `halguru models list`, a .gguf path, or PROVIDER:ARGUMENT",
    )
    instructions: str = Field(default="", description="the system prompt")
    instructions_file: str | None = Field(
        default=None, description="a file (relative to agent.yaml) appended to the instructions"
    )
    tools: list[str] = Field(default=[], description="tools the agent may call (allow-list)")
    approvals: list[str] = Field(
        default=[], description="tools (from tools:) whose calls wait for a human: the run pauses until "
        "`halguru runs approve RUN_ID` or `halguru runs reject RUN_ID`")
    tool_choice: Literal["auto", "required", "none"] = Field(
        default="auto", description="required: the first model call must call a tool"
    )
    knowledge: list[str] = Field(default=[], description="knowledge bases or folders the agent answers from")
    retrieval: RetrievalSettings = RetrievalSettings()
    sampling: Sampling = Sampling()
    limits: Limits = Limits()
    team: TeamSettings | None = Field(default=None, description="agents this one hands off to or calls")
    metadata: dict[str, Any] = Field(default={}, description="free-form, for your own tooling")


def load_spec(path: Path) -> AgentSpec:
    """Read and validate agent.yaml; any problem is one AgentSpecError naming file, field and line."""
    text, data = read_mapping(path, AgentSpecError, "no agent.yaml here; create one with `halguru new`",
                              "name: ..., model: ...")
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        _, line, problem = first_problem(text, exc)
        raise AgentSpecError(f"{path}:{line}: {problem}") from None


def agent_json_schema() -> dict[str, Any]:
    return AgentSpec.model_json_schema()
