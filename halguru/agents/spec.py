"""agent.yaml: the definition of an agent, validated by pydantic.

Errors name the file, the field and the line: ``agent.yaml:7: tools.0: ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from halguru.errors import AgentSpecError
from halguru.models.base import SEED_MAX, SEED_MIN, TOP_K_MAX
from halguru.names import NAME_MAX
from halguru.tools.settings import NAME_PATTERN, HTTPToolSettings, MCPServerSettings
from halguru.tools.settings import HTTPToolAuth as HTTPToolAuth  # re-exported: agent.yaml's whole schema is here
from halguru.yamlfile import every_problem, first_problem, read_mapping


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: float = Field(default=0.2, ge=0, le=2, description="0 = most deterministic")
    top_p: float = Field(default=0.95, gt=0, le=1)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX, description="fixed seed for reproducible "
                                                                                 "sampling (a 64-bit integer)")
    repeat_penalty: float = Field(default=1.1, ge=1, le=2, description="discourages loops (local models)")
    top_k: int | None = Field(default=None, ge=0, le=TOP_K_MAX,
                              description="sample from the k likeliest tokens only (0: all; llama.cpp models, 40 "
                                          "when unset)")
    min_p: float | None = Field(default=None, ge=0, le=1, description="drop tokens less likely than min_p times "
                                                                         "the likeliest (llama.cpp models, 0.05 "
                                                                         "when unset)")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_steps: int = Field(default=6, ge=1, le=100, description="model calls per run (each tool round is one)")
    max_tokens: int = Field(default=512, ge=1, description="tokens the model may generate per call")
    timeout: float = Field(default=300, gt=0, description="seconds a whole run may take")


class RetrievalSettings(BaseModel):
    """How an agent with ``knowledge:`` uses it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: Literal["auto", "tool", "both"] = Field(
        default="auto", description="auto: top chunks go into the prompt; tool: the model calls search_knowledge")
    top_k: int = Field(default=4, ge=1, le=50, description="chunks retrieved per knowledge base")
    search: Literal["hybrid", "vector", "fts"] = Field(default="hybrid", description="search mode")
    cite: bool = Field(default=True, description="append the cited sources to the answer")
    embedder: str | None = Field(
        default=None, description="the embedder of the bases made from knowledge folders: minilm (the default), "
                                  "fast (wordllama: ~30x faster ingest, weaker on paraphrase), or any registered one")


class TeamSettings(BaseModel):
    """Other agents this one works with, and the guards of a team run (see README, "Teams and orchestration")."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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


class WorkflowStep(BaseModel):
    """One step of a workflow: exactly one of ``agent``, ``tool`` or ``condition``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="names the step; later steps read "
                    "its output as steps.<id>.output")
    agent: str | None = Field(default=None, description="an agent folder (relative to this agent.yaml) to run")
    tool: str | None = Field(default=None, description="a tool (from tools:) to call")
    condition: str | None = Field(default=None, description="an expression; its value is the step's output")
    input: str = Field(default="{{ input }}", description="agent steps: the message, a template "
                       "({{ input }}, {{ steps.<id>.output }})")
    args: dict[str, Any] = Field(default={}, description="tool steps: the arguments; strings are templates")
    output: dict[str, Any] | None = Field(
        default=None, description="JSON schema the output must match (agent steps then answer in JSON)")
    needs: list[str] | None = Field(
        default=None, description="steps that must finish first (default: the step before; [] = at the "
        "start); steps whose needs are met run in parallel")
    when: str | None = Field(default=None, description="an expression: the step is skipped when it is false")
    retries: int = Field(default=0, ge=0, le=10, description="tool and agent steps: how many times a step that "
                         "failed (the tool's error, the agent failed or answered off its output schema) is tried "
                         "again before the workflow fails")
    retry_delay: float = Field(default=1.0, ge=0, le=3600, description="seconds before the first retry, doubling "
                               "at each one (within the workflow's timeout)")
    timeout: float | None = Field(default=None, gt=0, le=86400, description="tool and agent steps: seconds each "
                                  "try may take; past it the try fails, naming the step (tried again if retries: "
                                  "allows), within the workflow's timeout")


class WorkflowSettings(BaseModel):
    """Declared steps run in dependency order, in parallel where they can; each one is checkpointed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: list[WorkflowStep] = Field(min_length=1)
    output: str | None = Field(default=None, description="the answer, a template (default: the last step's "
                               "output)")
    max_parallel: int = Field(default=4, ge=1, le=64, description="steps running at once")
    timeout: float = Field(default=600, gt=0, description="seconds the whole workflow may take")


CRON_SHORTCUTS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_HORIZON_YEARS = 5  # a schedule's cron must name a time within this many years (31 February never comes)


class Schedule(BaseModel):
    """A run started on a cron schedule by the worker (``halguru serve`` or ``halguru worker``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX,
                      description="names the schedule (unique within the agent)")
    cron: str = Field(description="a cron expression, five fields: minute hour day-of-month month day-of-week "
                      "(e.g. '0 9 * * MON-FRI'), or @hourly, @daily, @weekly, @monthly, @yearly")
    timezone: str = Field(default="UTC", description="an IANA time zone the cron expression is read in "
                          "(e.g. Europe/Paris): 9:00 stays 9:00 across daylight saving changes")
    input: str = Field(min_length=1, description="the message each scheduled run gets")
    missed: Literal["once", "skip"] = Field(
        default="once", description="after downtime: 'once' runs one catch-up run however many times were "
        "missed, 'skip' waits for the next time")

    # Field validators, so that an error names the line of the field (schedules.0.cron), not of the schedule.
    @field_validator("cron")
    @classmethod
    def _check_cron(cls, cron: str, info: ValidationInfo) -> str:
        from datetime import UTC, datetime

        from croniter import CroniterBadDateError, croniter

        fields = cron.split()
        if fields[:1] and fields[0].startswith("@"):
            if cron.strip() not in CRON_SHORTCUTS:
                raise ValueError(f"unknown cron shortcut {cron!r} (one of {', '.join(CRON_SHORTCUTS)})")
        elif len(fields) != 5:  # croniter reads a sixth field as seconds, a seventh as the year: not cron
            raise ValueError(f"cron {cron!r} has {len(fields)} fields; it takes five: minute hour day month weekday "
                             "(no seconds or year field), e.g. '0 9 * * *' for 9:00 every day")
        if not croniter.is_valid(cron):
            raise ValueError(f"invalid cron expression {cron!r} (five fields: minute hour day month weekday)")
        try:  # a valid expression may name no date at all (31 February): the worker would never run it
            croniter(cron, datetime.now(UTC), max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"schedule {info.data.get('name', '?')!r}: cron {cron!r} names no time in the next "
                             f"{CRON_HORIZON_YEARS} years (a day its month never has, such as 31 February?)") from None
        return cron

    @field_validator("input")
    @classmethod
    def _check_input(cls, text: str) -> str:
        if not text.strip():  # the API refuses such a message (422): a schedule must not run the agent on it
            raise ValueError("the input is blank: write the message each scheduled run gets")
        return text

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, timezone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name such as Europe/Paris)") from None
        return timezone


class AgentSpec(BaseModel):
    """The contents of agent.yaml."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra=lambda schema: _model_or_workflow(schema))

    name: str = Field(pattern=NAME_PATTERN, max_length=NAME_MAX, description="agent name, used in traces and URLs")
    description: str = Field(default="", description="one line: what the agent is for")
    model: str = Field(
        min_length=1,
        description="a model name from `halguru models list`, a .gguf path, or PROVIDER:ARGUMENT; a relative "
        "path is relative to this agent.yaml's folder (not needed with workflow:)",
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
    workflow: WorkflowSettings | None = Field(
        default=None, description="declared steps instead of a chat loop (agents, tools, conditions)")
    mcp: list[MCPServerSettings] = Field(default=[], description="MCP servers whose tools the agent may call")
    http_tools: list[HTTPToolSettings] = Field(default=[], description="tools that call HTTP APIs, "
                                               "declared without Python")
    channels: dict[str, dict[str, Any]] = Field(
        default={}, description="messaging channels that reach this agent (twilio:, slack:, telegram:, email:, or a "
        "plugin's); each channel checks its own settings")
    schedules: list[Schedule] = Field(default=[], description="runs started on a cron schedule by the worker")
    metadata: dict[str, Any] = Field(default={}, description="free-form, for your own tooling")
    # The sections plugins registered (register_sections) as agent.yaml has them: their plugins check them.
    _sections: dict[str, Any] = PrivateAttr(default_factory=dict)

    def section(self, name: str) -> Any:
        """The value of agent.yaml's section ``name``: a field's (``team``, ``workflow``) or a plugin's
        section's (``relay``); None when the agent has none."""
        if name in type(self).model_fields:
            return getattr(self, name)
        return self._sections.get(name)

    @model_validator(mode="before")
    @classmethod
    def _workflow_needs_no_model(cls, data: Any) -> Any:
        # A workflow's agent steps use their own agents' models; "workflow" labels its runs.
        if isinstance(data, dict) and data.get("workflow") is not None and "model" not in data:
            return {**data, "model": "workflow"}
        return data

    @field_validator("mcp")
    @classmethod
    def _mcp_names_unique(cls, servers: list[MCPServerSettings]) -> list[MCPServerSettings]:
        names = [s.name for s in servers]
        if twice := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"two mcp servers are named {twice!r}; give each its own name (errors and traces name "
                             "the server)")
        return servers

    @model_validator(mode="after")
    def _schedule_names_unique(self) -> AgentSpec:
        names = [s.name for s in self.schedules]
        if len(names) != len(set(names)):
            raise ValueError(f"schedules: two schedules named {next(n for n in names if names.count(n) > 1)!r}")
        return self


def _model_or_workflow(schema: dict[str, Any]) -> None:
    """The JSON schema says what the validator does: ``model`` is required unless there is a ``workflow``."""
    schema["title"] = "halguru agent.yaml"
    schema["required"] = [name for name in schema.get("required", []) if name != "model"]
    schema["if"] = {"required": ["workflow"], "properties": {"workflow": {"type": "object"}}}
    schema["else"] = {"required": ["model"]}


def load_spec(path: Path) -> AgentSpec:
    """Read and validate agent.yaml; any problem is one AgentSpecError naming file, field and line."""
    text, data = read_mapping(path, AgentSpecError, "no agent.yaml here; create one with `halguru new`",
                              "name: ..., model: ...")
    claimed = _plugin_sections(data)
    try:
        spec = AgentSpec.model_validate({key: value for key, value in data.items() if key not in claimed})
        spec._sections = claimed
        return spec
    except ValidationError as exc:
        _, line, problem = first_problem(text, exc, model=AgentSpec)
        raise AgentSpecError(f"{path}:{line}: {problem}", [f"{path}:{n}: {p}" for _, n, p in
                                                           every_problem(text, exc, model=AgentSpec)]) from None


def _plugin_sections(data: dict[str, Any]) -> dict[str, Any]:
    """The keys of agent.yaml that are not fields but sections plugins registered (with their values); any other
    key stays an unknown field. Plugins are asked only when such a key is there."""
    others = data.keys() - AgentSpec.model_fields.keys()
    if not others:
        return {}
    from halguru.agents.driver import sections

    registered = sections()
    return {key: data[key] for key in others if key in registered}


def agent_json_schema() -> dict[str, Any]:
    return AgentSpec.model_json_schema()
