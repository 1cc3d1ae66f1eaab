"""The OpenAI-compatible endpoint's bodies: requests typed as OpenAI types them, answers and errors in its shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from halguru.models.base import SEED_MAX, SEED_MIN, TOP_K_MAX
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError
from halguru_server.openai_tools import MAX_TOOLS, ClientTool, ToolChoiceObject

# OpenAI fields accepted and ignored: they change nothing in the answer (who the end user is, OpenAI's own
# storage, billing tier and caching, a latency hint). Any other field this endpoint does not type is a 400
# naming it, as OpenAI answers an unknown field: a client relying on it gets told, not a different answer. A field
# sent as null (clients that write every field they know, the unset ones as null) is one not sent.
IGNORED_FIELDS = ("user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
                  "prediction")
PENALTIES = ("frequency_penalty", "presence_penalty")
# llama.cpp's own (its server's names; vLLM and Ollama clients send them too), each with the value that turns it
# off. A model whose provider does not list one in ``sampling`` is refused any other value (400), as a penalty.
LLAMA_SAMPLING = {"top_k": 0, "min_p": 0, "repeat_penalty": 1}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    # "function": the result of a legacy ``function_call``, from a history older clients and stored chats keep
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s<|\\/>]+$")] | None = Field(
        default=None, description="who speaks (a user's or a system message's: the model reads it before the text); "
                                  "a function message's: the function it answers")
    function_call: dict[str, Any] | None = Field(default=None, description="a legacy call, in an assistant's message")


class JsonSchemaFormat(BaseModel):
    name: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's structured output: ``json_object`` or ``json_schema`` becomes the run's output schema (constrained
    decoding where the model provider can, as a workflow step's ``output:``)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI adds options; only include_usage changes what is sent
    include_usage: StrictBool = Field(default=False, description="a last chunk with the usage and no choices")


StopString = Annotated[str, Field(min_length=1, max_length=200)]
MAX_STOPS = 16


# The fields OpenAI's API types are typed here too, strictly ("yes" is not a boolean, "10" not a number), so a
# client's mistake is a 422 naming the field, not a request answered as if it had sent something else.
class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # checked by ``unsupported``: IGNORED_FIELDS pass, others are a 400
    model: str = Field(min_length=1, description="the agent's name")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(default=None, description="1: one choice per request")
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True,
                                description="0: only the likeliest token (greedy, as temperature 0)")
    max_tokens: StrictInt | None = Field(default=None, gt=0)
    max_completion_tokens: StrictInt | None = Field(default=None, gt=0)
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)  # OpenAI's int64
    # OpenAI takes 4; llama.cpp's server, vLLM and Ollama any number, and their clients send more (Continue all its
    # stop words to a base URL not OpenAI's, SillyTavern one per speaker)
    stop: StopString | Annotated[list[StopString], Field(min_length=1, max_length=MAX_STOPS)] | None = Field(
        default=None, description=f"up to {MAX_STOPS} strings: the answer ends before the first that it would "
                                  "contain")
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True,
                                            description="models that apply it (llama.cpp, OpenAI-compatible); "
                                                        "else a 400")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True,
                                           description="models that apply it (llama.cpp, OpenAI-compatible); "
                                                       "else a 400")
    top_k: StrictInt | None = Field(default=None, ge=0, le=TOP_K_MAX,
                                    description="llama.cpp's: sample from the k likeliest tokens (0: all); models "
                                                "that apply it (llama.cpp, OpenAI-compatible), else a 400 unless 0")
    min_p: float | None = Field(default=None, ge=0, le=1, strict=True,
                                description="llama.cpp's: drop tokens less likely than min_p times the likeliest "
                                            "(0: none); models that apply it (llama.cpp, OpenAI-compatible), else a "
                                            "400 unless 0")
    repeat_penalty: float | None = Field(default=None, ge=1, le=2, strict=True,
                                         description="llama.cpp's repetition penalty (1: none; the agent's "
                                                     "otherwise); llama.cpp models, else a 400 unless 1")
    logprobs: StrictBool | None = Field(default=None, description="not supported: true is a 400")
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20, description="not supported: a 400")
    modalities: list[Literal["text"]] | None = None
    response_format: ResponseFormat | None = None
    tools: list[ClientTool] | None = Field(
        default=None, max_length=MAX_TOOLS,
        description="functions the client runs, offered beside the agent's own tools (which run server-side); a "
                    "call of one ends the answer with tool_calls, and the next request brings their results")
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = Field(
        default=None, description="none: the client's tools are not offered; required: the first model call "
                                  "calls a tool (the agent's or the client's); a named function: it is called; "
                                  "allowed_tools: only those are offered, in its mode (auto or required)")
    parallel_tool_calls: StrictBool | None = Field(default=None, description="false: at most one tool call "
                                                                             "per model reply")

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def tokens_asked(self) -> int | None:
        """The answer's length the caller asks for (``max_completion_tokens``, OpenAI's newer name, first)."""
        return self.max_completion_tokens or self.max_tokens

    def sampling(self, served: ServedAgent) -> dict[str, Any]:
        """The run's sampling settings from the request; 400 for what the agent's model would not honour."""
        off = {**dict.fromkeys(PENALTIES, 0), **LLAMA_SAMPLING}  # changes nothing: accepted anywhere
        for name, value in off.items():
            if getattr(self, name) not in (None, value) and name not in served.sampling:
                from halguru_server.ops import model_label  # a file path's folders are not the caller's business

                raise ApiError(400, f"{name}: agent {served.name}'s model ({model_label(served.model)}) does not "
                                    "apply it; leave it out", param=name)
        if self.logprobs or self.top_logprobs:
            name = "logprobs" if self.logprobs else "top_logprobs"
            raise ApiError(400, f"{name}: this endpoint does not return log probabilities; leave it out", param=name)
        # top_p 0 (OpenAI accepts it) keeps only the likeliest token: greedy decoding, whatever the temperature
        greedy = self.top_p == 0
        # a caller may lower agent.yaml's limit on each model call, never raise it: it is the operator's cap
        asked, limit = self.tokens_asked(), served.agent.spec.limits.max_tokens
        settings = {"temperature": 0 if greedy else self.temperature, "top_p": None if greedy else self.top_p,
                    "seed": self.seed, "max_tokens": min(asked, limit) if asked else None, "stop": self.stops(),
                    **{name: getattr(self, name) or None for name in PENALTIES},
                    **{name: getattr(self, name) for name in LLAMA_SAMPLING if name in served.sampling}}
        return {k: v for k, v in settings.items() if v is not None}

    def check_supported(self) -> None:
        """400 for a field this endpoint does not type and does not knowingly ignore, and for several choices."""
        # null is OpenAI's "not set" (its default) for every optional field: it asks for nothing
        unknown = [name for name, value in (self.model_extra or {}).items()
                   if name not in IGNORED_FIELDS and value is not None]
        if unknown:
            raise ApiError(400, f"{unknown[0]}: not supported by this endpoint; leave it out (it ignores only "
                                f"{', '.join(IGNORED_FIELDS)})", param=unknown[0])
        if self.n is not None and self.n != 1:
            raise ApiError(400, f"n: {self.n} choices asked; an agent answers with one (send n=1 or leave it out)",
                           param="n")

    def output_schema(self, served: ServedAgent) -> dict[str, Any] | None:
        """The answer's schema, if one is asked for; 400 for a schema that is not valid JSON Schema, or that the
        agent's model cannot follow (llama.cpp: turn into a grammar), before any run is stored. Pure Python work
        in the size of the schema: called off the event loop."""
        form = self.response_format
        if form is None or form.type == "text":
            return None
        driver = served.agent.driver
        if driver is not None:  # its run passes no schema to its agents' steps: the answer would be free text
            raise ApiError(400, f"response_format: agent {served.name} is a {driver.kind}, whose answer comes from "
                                "its agents' steps and is not held to a schema; leave it out (a workflow step's "
                                "output: types its answer)", param="response_format")
        if form.type == "json_object":
            return {"type": "object"}
        if form.json_schema is None:
            raise ApiError(422, "response_format: json_schema needs its json_schema: {name, schema}",
                           param="response_format")
        schema = form.json_schema.schema_
        model_check(served, served.check_schema_size, schema)  # cheap, before the validation's own cost
        check_json_schema(schema)
        model_check(served, served.check_schema, schema)
        return schema


def model_check(served: ServedAgent, check: Callable[[dict[str, Any]], None] | None, schema: dict[str, Any],
                param: str = "response_format") -> None:
    """400 with the reason for a schema ``check`` (the agent's model's) refuses; ``param``: where the schema is."""
    if check is None:
        return
    try:
        check(schema)
    except ValueError as exc:
        from halguru_server.ops import model_label  # a file path's folders are not the caller's business
        raise ApiError(400, f"{param}: agent {served.name}'s model ({model_label(served.model)}) "
                            f"cannot follow this schema: {exc}", param=param) from None


def check_json_schema(schema: dict[str, Any], param: str = "response_format") -> None:
    """400 naming the fault for a schema that is not valid JSON Schema (its ``$schema``'s draft, else 2020-12)."""
    from jsonschema import Draft202012Validator, SchemaError, validators

    what = "the json_schema's schema" if param == "response_format" else "the schema"
    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path) or " (its top)"
        raise ApiError(400, f"{param}: {what} is not valid JSON Schema: {exc.message[:300]}, "
                            f"at schema{where}", param=param) from None
    except RecursionError:
        raise ApiError(400, f"{param}: {what} is nested too deeply", param=param) from None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "halguru"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChoiceToolFunction(BaseModel):
    name: str
    arguments: str = Field(description="a JSON object, as a string")


class ChoiceToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ChoiceToolFunction


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(description="null when the answer is only tool_calls")
    tool_calls: list[ChoiceToolCall] | None = Field(default=None, description="calls of the request's tools, for "
                                                                               "the client to run")


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, not_found_error, "
                                  "rate_limit_error or server_error")
    param: str | None = Field(description="the request field at fault, if one is")
    code: str | None = Field(description="what went wrong exactly: model_not_found, invalid_api_key, queue_full...")


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail
