"""Request and response bodies of the serve-mode /v1 API (they are its OpenAPI document).

Pure pydantic, here rather than in ``halguru_server`` so that ``halguru.client`` shares them with the server
without importing it (tests/test_import_contract.py); ``halguru_server.schemas`` re-exports them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError

from halguru.printable import is_blank

__all__ = [
    "BLANK_MESSAGE", "ActivateIn", "AgentList", "AgentOut", "ApproveIn", "ConversationIn", "ConversationOut",
    "ConversationPage", "ConversationRename",
    "DeploymentList", "DeploymentOut", "ErrorBody", "ErrorDetail", "MessageIn", "MessageList", "MessageOut",
    "PendingList", "PendingRun", "RejectIn", "ResumeIn", "RunBase", "RunCancelOut", "RunDetail", "RunList", "RunOut",
    "RunSummary", "RunningOut", "SessionOut", "ToolCallOut", "Usage", "UserMessage", "non_blank",
]

BLANK_MESSAGE = ("the message is empty or only whitespace (or invisible characters); give the agent something "
                 "to answer")


def non_blank(message: str) -> AfterValidator:
    """A validator refusing text that is only whitespace (422 with ``message``): ``min_length`` counts spaces,
    so "   " would start a run on nothing (the CLI refuses it as well)."""
    def check(text: str) -> str:
        if is_blank(text):
            raise PydanticCustomError("blank", message)
        return text

    return AfterValidator(check)


UserMessage = Annotated[str, Field(min_length=1), non_blank(BLANK_MESSAGE)]


class ErrorDetail(BaseModel):
    type: str = Field(description="machine-readable kind, e.g. not_found, invalid_request, unauthorized")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class AgentOut(BaseModel):
    name: str
    description: str
    model: str
    tools: list[str]
    web_chat: Literal["public", "key"]
    version: int | None = Field(default=None, description="the published version served (`halguru publish`); "
                                                          "null: a folder given to `halguru serve`")


class AgentList(BaseModel):
    data: list[AgentOut]


class SessionOut(BaseModel):
    token: str = Field(description="send as the X-Chat-Session header; it owns the conversations started with it")


class ConversationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=200)
    title: str = Field(default="", max_length=200)


class ConversationRename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, description="the conversation's new title")


class ConversationOut(BaseModel):
    id: str
    agent: str
    title: str
    created: float
    updated: float
    messages: int = 0


class ConversationPage(BaseModel):
    data: list[ConversationOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page (the conversations after the "
                                                "last one shown); null on the last page")


class MessageOut(BaseModel):
    role: str
    content: str
    tool_calls: list[dict[str, Any]] = []
    tool_call_id: str | None = None
    name: str | None = None
    human: bool = Field(default=False, description="an answer a person (an operator holding the conversation) "
                                                   "wrote, not the agent")
    run_id: str | None = Field(default=None, description="the run that added it (GET /v1/runs/{id}); null for "
                               "a message no run added: a person's answer, a chat completion's given history")
    run_status: str | None = Field(default=None, description="how that run ended: ok; cancelled, failed, limited "
                                   "or interrupted (the answer was cut short: what it had written by then is "
                                   "kept); paused (a tool call waits for approval); running")


class RunningOut(BaseModel):
    """A turn of the conversation still being answered: its messages are stored when its run ends."""

    run_id: str = Field(description="follow it at GET /v1/runs/{run_id}/events; stop it with POST .../cancel")
    input: str = Field(description="the message it answers")


class MessageList(BaseModel):
    data: list[MessageOut]
    next_cursor: str | None = Field(default=None, description="the next page's cursor (with limit); null: no more")
    running: RunningOut | None = Field(default=None, description="the turn being answered now, not in data yet (on "
                                       "the last page; a run that ended meanwhile is in data and not here)")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: UserMessage = Field(description="the user's message (not only whitespace)")
    stream: StrictBool = Field(default=False, description="answer as Server-Sent Events (typed run events)")
    detach: StrictBool = Field(default=False, description="the run goes on to its end if the client leaves (its "
                               "stream or request closed: a page reloaded, a dropped connection); stop it with POST "
                               "/v1/runs/{id}/cancel. Without it, closing the request cancels the run")


class RunCancelOut(BaseModel):
    """A cancelled run: how it ended (``cancelled``, or how it ended first if it was already ending), or
    ``running`` if its process has not stopped it yet (it does within a second unless it is stuck)."""

    run_id: str
    status: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    id: str = Field("", description="the call's id as the model gave it (a client's result answers it)")
    client: bool = Field(False, description="a call of the request's own tools (the OpenAI endpoint's client-side "
                                            "functions), left to the client to run, not run here")


class RunOut(BaseModel):
    """The answer to a message: the run's outcome (its events are at GET /v1/runs/{run_id})."""

    run_id: str
    conversation_id: str
    agent: str
    status: Literal["ok", "failed", "cancelled", "limited", "paused"]
    output: str
    error: str | None
    usage: Usage
    tool_calls: list[ToolCallOut]
    duration_ms: float


class RunBase(BaseModel):
    """What every view of a run shows."""

    id: str
    conversation_id: str
    agent: str
    model: str
    input: str
    output: str
    status: str = Field(description="running, interrupted (its process died), paused, failed, limited, cancelled "
                                    "or ok")
    error: str | None
    started: float
    finished: float | None
    duration_ms: float | None
    job_id: str | None = Field(description="the job that started the run (GET /v1/jobs/{id}); null: not a job's")


class RunDetail(RunBase):
    steps: int
    prompt_tokens: int
    completion_tokens: int
    events: list[dict[str, Any]]


class RunSummary(RunBase):
    """A run in a list: its outcome, and where a team or workflow run would resume from."""

    kind: Literal["team", "workflow", "agent"] | None = Field(
        description="checkpointed runs only: a team's, a workflow's, or a plain agent's continuation after an "
        "approval ('agent'); null for other plain agent runs")
    checkpoint: str | None = Field(description="the last checkpoint's label, e.g. 'step pay ok'")
    resumed_by: str | None = Field(description="the run that continued this one, once resumed")


class RunList(BaseModel):
    data: list[RunSummary]


class PendingRun(BaseModel):
    """A paused run: the tool call that waits for a human."""

    run_id: str
    conversation_id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    call_id: str
    input: str
    created: float


class PendingList(BaseModel):
    data: list[PendingRun]


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edit_args: dict[str, Any] | None = Field(default=None, description="run the call with these arguments instead")
    stream: StrictBool = Field(default=False, description="answer as Server-Sent Events (typed run events)")


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", description="why: the model is told the call was refused, and this")
    stream: StrictBool = Field(default=False, description="answer as Server-Sent Events (typed run events)")


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stream: StrictBool = Field(default=False, description="answer as Server-Sent Events (typed run events)")


class DeploymentOut(BaseModel):
    """One published version of an agent (``halguru publish``)."""

    agent: str
    version: int
    sha256: str = Field(description="of the bundle as uploaded")
    manifest: dict[str, Any] = Field(description="files (path: sha256), model, tools, knowledge")
    published_by: str | None
    publisher: str | None = Field(default=None, description="who published it: the user's email or name")
    created: float
    active: bool = Field(description="the version being served")
    activated: float | None
    unchanged: bool = Field(default=False, description="a publish of the active version's exact bundle: no new "
                                                       "version was made")
    live_ms: float | None = Field(default=None, description="a publish: milliseconds from the upload's arrival "
                                                            "to the new version answering")


class DeploymentList(BaseModel):
    data: list[DeploymentOut]


class ActivateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="the version to serve (`halguru deployments list` shows them)")
