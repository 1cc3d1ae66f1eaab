"""``@tool`` turns a typed Python function into a tool with a JSON schema.

```python
@tool
def add(a: int, b: int) -> int:
    "Add two integers."
    return a + b
```

A function taking a single pydantic model is also accepted; its fields are the
tool's arguments. Arguments from a model are validated by pydantic before the
function runs.

Importing this module, and decorating, imports no pydantic: a plugin's tools are made as the plugin loads, on
every halguru start (``--help`` included), and pydantic's first model costs ~0.1-0.2 s. A tool's arguments model
is built the first time it is used (its ``parameters``, a call); ``load_project_tools`` and ``plugin_tools`` build
it as they collect the tools, so a parameter type without a JSON schema is still said before any run.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeGuard, get_type_hints, overload

from halguru.errors import ToolError

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass
class Tool:
    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[BaseModel]
    timeout: float = 30.0
    # A function taking one pydantic model gets that model, not keyword arguments.
    takes_model: bool = False
    # Run a sync function on the event loop instead of a thread: only for quick, non-blocking code
    # (saves the ~50 µs thread hop; a blocking inline tool would stall every other run).
    inline: bool = False
    # Declared ``-> str``: its result is text, never JSON to decode (a workflow step's "10001" stays a string).
    returns_text: bool = False
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.function)

    if not TYPE_CHECKING:  # (for mypy, arguments_model is the field it is)

        def __getattr__(self, name: str) -> Any:
            """``arguments_model`` of a ``@tool`` function, built on first use (see the module's docstring)."""
            build = self.__dict__.get("_build_arguments_model")
            if name != "arguments_model" or build is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            self.arguments_model = build()  # raises ToolError (no JSON schema) each time until fixed
            del self.__dict__["_build_arguments_model"]
            return self.arguments_model

    @cached_property
    def parameters(self) -> dict[str, Any]:
        schema = self.arguments_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def validate(self, arguments: dict[str, Any]) -> BaseModel:
        from pydantic import ValidationError

        try:
            return self.arguments_model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None

    def call_args(self, validated: BaseModel) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.takes_model:
            return (validated,), {}
        return (), {name: getattr(validated, name) for name in type(validated).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)


def _arguments_model(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel] | None, bool]:
    """(the function's own pydantic model, True) for a function of one pydantic model (pydantic is loaded then),
    else (None, False) once the parameters are checked: ``_build_model`` makes their model when it is needed."""
    hints, params = _parameters(fn, name)
    if len(params) == 1:
        annotation = hints.get(params[0].name)
        if inspect.isclass(annotation) and _is_pydantic_model(annotation):
            from pydantic import PydanticUserError

            try:
                annotation.model_json_schema()
            except PydanticUserError as exc:
                raise ToolError(f"tool {name}: its argument model {annotation.__name__} has no JSON schema "
                                f"to show the model ({str(exc).splitlines()[0]})") from None
            return annotation, True
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(f"tool {name}: *args/**kwargs cannot be described to a model")
        if p.name not in hints:
            raise ToolError(f"tool {name}: parameter {p.name!r} needs a type hint")
    return None, False


def _parameters(fn: Callable[..., Any], name: str) -> tuple[dict[str, Any], list[inspect.Parameter]]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise ToolError(f"tool {name}: cannot resolve its type hints ({exc}); define them at module level") from None
    return hints, [p for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")]


def _is_pydantic_model(cls: type) -> TypeGuard[type[BaseModel]]:
    """Whether ``cls`` is a pydantic model, without importing pydantic (a class of one has imported it)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _build_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """The arguments model of a function whose parameters ``_arguments_model`` checked."""
    from pydantic import ConfigDict, PydanticUserError, create_model

    hints, params = _parameters(fn, name)
    fields: dict[str, Any] = {
        p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default) for p in params}
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema()
    except PydanticUserError:
        raise ToolError(_unschemable(name, fields)) from None
    return model


def _unschemable(name: str, fields: dict[str, Any]) -> str:
    """One line naming the parameter whose type has no JSON schema (the model is shown the schema)."""
    from pydantic import PydanticUserError, TypeAdapter

    for param, (hint, _default) in fields.items():
        try:
            TypeAdapter(hint).json_schema()
        except PydanticUserError:
            shown = getattr(hint, "__name__", None) if isinstance(hint, type) else None
            return (f"tool {name}: parameter {param!r} has type {shown or hint}, which has no JSON schema "
                    "to show the model; use str, int, float, bool, list, dict, Literal or a pydantic model")
    return f"tool {name}: its arguments have no JSON schema to show the model"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float = 30.0, inline: bool = False
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = 30.0,
    inline: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool from a typed function; use bare (``@tool``) or with options (``@tool(name=...)``)."""

    def wrap(func: Callable[..., Any]) -> Tool:
        tool_name = name or func.__name__
        doc = description or inspect.getdoc(func) or ""
        if not doc:
            raise ToolError(f"tool {tool_name}: add a docstring or description= (the model reads it)")
        model, takes_model = _arguments_model(func, tool_name)
        made = Tool(tool_name, doc.strip(), func, model, timeout=timeout, takes_model=takes_model,  # type: ignore[arg-type]
                    inline=inline, returns_text=inspect.signature(func).return_annotation in (str, "str"))
        if model is None:  # built when first used (see the module's docstring)
            del made.arguments_model
            made._build_arguments_model = functools.partial(_build_model, func, tool_name)  # type: ignore[attr-defined]
        return made

    return wrap(fn) if fn is not None else wrap
