"""What each registration hook's ``register`` takes, checked as a plugin loads.

A plugin that registers something of the wrong kind (a plain function as a tool, a provider class without a
``name``, an embedder without its factory) is skipped at load with one line saying what was expected, so
every command sees the same skip; otherwise ``halguru plugins`` called it fine and each command later failed
its own way with an internal AttributeError or TypeError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from halguru.errors import short_repr


class RegistrationError(Exception):
    """A ``register`` call a hook's contract refuses; its message is the whole warning."""


def _args(hook: str, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The values of ``register(*names)`` from a call, or the contract in one line."""
    values = list(args[:len(names)]) + [kwargs[n] for n in names[len(args):] if n in kwargs]
    if len(args) > len(names) or len(values) != len(names) or set(kwargs) - set(names[len(args):]):
        given = ", ".join([short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()])
        raise RegistrationError(f"{hook} calls register({', '.join(names)}), not register({given})")
    return values


def _what(value: Any) -> str:
    """``the function plain_function``, ``the class NoName``, ``a str``."""
    if isinstance(value, type):
        return f"the class {value.__name__}"
    if callable(value) and hasattr(value, "__name__"):
        return f"the function {value.__name__}"
    return f"a {type(value).__name__}"


def tool_entry(*args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``register(tool)``: a ``halguru.tools.Tool``, what ``@tool`` returns (known by its fields: ``plugins`` sits
    below ``tools`` and never imports it)."""
    [tool] = _args("register_tools", ("tool",), args, kwargs)
    # a Tool's arguments_model is a field, read from its class: reading it off a @tool builds the pydantic model
    # (as the plugin loads, on every halguru start)
    if not (isinstance(getattr(tool, "name", None), str) and callable(getattr(tool, "function", None))
            and ("arguments_model" in getattr(type(tool), "__dataclass_fields__", ())
                 or hasattr(tool, "arguments_model"))):
        hint = f" (decorate {getattr(tool, '__name__', 'it')} with @tool)" if callable(tool) else ""
        raise RegistrationError(f"register_tools expects a Tool, got {_what(tool)}{hint}")
    return tool.name, tool


PROVIDER_METHODS = ("default_models", "from_reference", "create")


def provider_entry(*args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``register(provider_class)``: a class with a ``name`` and ``default_models``, ``from_reference``, ``create``."""
    [provider] = _args("register_models", ("provider",), args, kwargs)
    name = getattr(provider, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistrationError(f"register_models expects a model provider class with a name; {_what(provider)} "
                                "has no 'name'")
    missing = [m for m in PROVIDER_METHODS if not callable(getattr(provider, m, None))]
    if missing:
        raise RegistrationError(f"model provider {name!r} ({_what(provider)}) lacks {', '.join(missing)}")
    return name, provider


def _named(hook: str, what: str, value: str) -> Callable[..., tuple[str, Any]]:
    """``register(name, value)``: a non-empty name (without ':', which separates NAME:ARGUMENT) and a callable."""

    def entry(*args: Any, **kwargs: Any) -> tuple[str, Any]:
        name, given = _args(hook, ("name", value), args, kwargs)
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise RegistrationError(f"{hook} expects register(name, {value}) with the {what}'s name (text, no ':'); "
                                    f"got {short_repr(name)}")
        if not callable(given):
            raise RegistrationError(f"{hook}: {what} {name!r} needs a {value} to call, got {_what(given)}")
        return name, given

    return entry


# hook -> (what it registers, in `halguru plugins`; its register's arguments as (name, value))
REGISTRATIONS: dict[str, tuple[str, Callable[..., tuple[str, Any]]]] = {
    "register_tools": ("tools", tool_entry),
    "register_models": ("model_providers", provider_entry),
    "register_embedders": ("embedders", _named("register_embedders", "embedder", "factory")),
    "register_channels": ("channels", _named("register_channels", "channel", "channel_class")),
    "register_sections": ("sections", _named("register_sections", "section", "loader")),
}
