"""The agent.yaml sections that configure tools (``mcp:``, ``http_tools:``), validated by pydantic.

They live with the tools that read them, below ``halguru.agents``: ``AgentSpec`` holds them, and the
tool modules take them without importing the agent layer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from halguru.names import NAME_PATTERN  # names of agents and MCP servers


class MCPServerSettings(BaseModel):
    """An MCP server whose tools the agent may call: a command (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, description="names the server in traces and error messages")
    command: list[str] | None = Field(
        default=None, description="stdio: the program and its arguments, run from the agent folder")
    env: dict[str, str] = Field(default={}, description="stdio: extra environment variables for the server "
                                "(it inherits only PATH, HOME and a few more); ${NAME} in a value is the secret NAME")
    url: str | None = Field(default=None, description="streamable HTTP: the server's endpoint, e.g. "
                            "http://127.0.0.1:8000/mcp")
    headers: dict[str, str] = Field(default={}, description="HTTP headers; ${NAME} in a value is the secret NAME "
                                    "(an environment variable, or `keyring set halguru NAME`)")
    tools: list[str] | None = Field(
        default=None, description="allow-list of the server's tools the agent may call (default: all)")
    timeout: float = Field(default=30, gt=0,
                           description="seconds to start the server, and for each call without progress")

    @field_validator("command")
    @classmethod
    def _no_secret_in_command(cls, command: list[str] | None) -> list[str] | None:
        """A ``${NAME}`` there was passed as those characters (only env: and headers: read secrets); expanding it
        would show the secret in every process list, so the way through env: is said instead."""
        from halguru.models.secrets import SECRET_REFERENCE

        for part in command or []:
            if found := SECRET_REFERENCE.search(part):
                name = found.group(1)
                raise ValueError(f"${{{name}}} is not read in a command (a command shows in every process list): "
                                 f"pass it as env: {{{name}: \"${{{name}}}\"}} and have the server read ${name} "
                                 f"(or run it through [sh, -c, 'server --token \"${name}\"'])")
        return command

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        return self


class HTTPToolAuth(BaseModel):
    """An auth header whose value is a secret, looked up when the tool is called (never stored in a file)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    secret: str = Field(min_length=1, description="the secret's name: an environment variable, or an entry "
                        "`halguru` / NAME in the system keyring (`keyring set halguru NAME`)")
    header: str = Field(default="Authorization", min_length=1, description="the header that carries it")
    scheme: str = Field(default="Bearer", description="put before the secret (empty: the bare secret)")


class HTTPToolSettings(BaseModel):
    """A tool that calls an HTTP API: a request template, or one operation of an OpenAPI document."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", description="the tool's name, as the model sees it")
    description: str = Field(default="", description="what it does (the model reads it); with openapi, the "
                             "default is the operation's summary and description")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="GET", description="templates: GET and DELETE send the arguments not in the URL as the query "
        "string, POST, PUT and PATCH as a JSON body (with openapi the document gives the method)")
    url: str | None = Field(default=None, description="URL template; {arg} is replaced by that argument, "
                            "percent-encoded; with openapi: the base URL, instead of the document's servers[0]")
    parameters: dict[str, Any] = Field(
        default={"type": "object", "properties": {}}, description="templates: JSON schema of the arguments "
        "(with openapi the document gives it)")
    headers: dict[str, str] = Field(default={}, description="extra request headers; ${NAME} in a value "
                                    "is the secret NAME (an environment variable, or `keyring set halguru NAME`)")
    auth: HTTPToolAuth | None = Field(default=None, description="an auth header built from a secret")
    openapi: str | None = Field(default=None, description="an OpenAPI 3 document, YAML or JSON (path relative "
                                "to agent.yaml)")
    operation: str | None = Field(default=None, description="with openapi: the operationId to call")
    timeout: float = Field(default=30, gt=0, description="seconds per request")

    @model_validator(mode="after")
    def _template_or_openapi(self) -> HTTPToolSettings:
        if (self.openapi is None) != (self.operation is None):
            raise ValueError("give openapi and operation together (or neither, with a url template)")
        if self.openapi is None and self.url is None:
            raise ValueError("give a url template, or openapi and operation")
        if self.openapi is not None and {"method", "parameters"} & self.model_fields_set:
            raise ValueError("with openapi, the document gives the method and parameters; remove them")
        return self
