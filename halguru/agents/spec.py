"""agent.yaml: the definition of an agent, validated by pydantic.

Errors name the file, the field and the line: ``agent.yaml:7: tools.0: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from halguru.errors import AgentSpecError

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
    tool_choice: Literal["auto", "required", "none"] = Field(
        default="auto", description="required: the first model call must call a tool"
    )
    knowledge: list[str] = Field(default=[], description="knowledge bases or folders the agent answers from")
    retrieval: RetrievalSettings = RetrievalSettings()
    sampling: Sampling = Sampling()
    limits: Limits = Limits()
    metadata: dict[str, Any] = Field(default={}, description="free-form, for your own tooling")


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def yaml_line_for(path: Path, text: str, loc: tuple[Any, ...]) -> int | None:
    try:
        return _node_line(yaml.compose(text), loc)
    except yaml.YAMLError:
        return None


def load_spec(path: Path) -> AgentSpec:
    """Read and validate agent.yaml; any problem is one AgentSpecError naming file, field and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentSpecError(f"{path}: no agent.yaml here; create one with `halguru new`") from None
    except OSError as exc:
        raise AgentSpecError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise AgentSpecError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise AgentSpecError(f"{path}: must be a YAML mapping (name: ..., model: ...)")
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = yaml_line_for(path, text, loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "missing":
            message = "required field is missing"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise AgentSpecError(f"{path}:{line or 1}: {field}: {message}{more}") from None


def agent_json_schema() -> dict[str, Any]:
    return AgentSpec.model_json_schema()
