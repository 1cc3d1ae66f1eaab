"""Tools described by a JSON schema instead of Python type hints (MCP servers, HTTP tools).

Their arguments are checked with ``jsonschema`` and reach the function as one dict, so any schema an
outside service publishes can be offered to the model as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from halguru.errors import ToolError
from halguru.tools.decorator import Tool


@dataclass
class SchemaTool(Tool):
    """``function(arguments: dict) -> Any`` (usually async), offered with ``schema`` as its parameters."""

    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @cached_property
    def parameters(self) -> dict[str, Any]:
        return self.schema

    @cached_property
    def _validator(self) -> Any:
        import jsonschema
        from referencing import Registry

        # `pattern` is left to the service: Python's re cannot be interrupted, and a pattern that backtracks
        # (an MCP server's "^(a+)+$" on 40 characters) held the event loop, and the GIL, for good.
        cls = jsonschema.validators.extend(jsonschema.validators.validator_for(self.schema), {"pattern": _unchecked})
        # A $ref to a URL is not fetched: jsonschema would get it with urllib, blocking the event loop without
        # a timeout, from any address the schema's author (an MCP server, an OpenAPI document) chose.
        return cls(self.schema, registry=Registry(retrieve=_no_retrieval))  # type: ignore[call-arg]

    def validate(self, arguments: dict[str, Any]) -> Any:
        try:
            problems = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        except Exception as exc:  # the schema's fault (unknown type, bad $ref or pattern), not the arguments'
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")
            raise ToolError(f"{self.name} cannot be called: its argument schema is invalid ({reason})") from None
        if problems:
            text = "; ".join(f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                             for e in problems[:3])
            raise ToolError(f"invalid arguments for {self.name}: {text}")
        return arguments

    def call_args(self, validated: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (validated,), {}


def _unchecked(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    return iter(())


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class


def schema_tool(name: str, description: str, schema: dict[str, Any],
                function: Callable[[dict[str, Any]], Awaitable[Any] | Any], *, timeout: float = 30.0) -> SchemaTool:
    """A tool from a name, a description, a JSON schema for its arguments and a function of one dict."""
    schema = dict(schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return SchemaTool(name, description, function, BaseModel, timeout=timeout, schema=schema)
