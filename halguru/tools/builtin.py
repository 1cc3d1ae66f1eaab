"""Built-in tools: calculator, current_time, http_get."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from halguru.config import get_settings
from halguru.errors import ToolError
from halguru.tools.decorator import tool

_MATH_FUNCTIONS = {
    name: getattr(math, name)
    for name in ("sqrt", "sin", "cos", "tan", "log", "log10", "exp", "floor", "ceil", "factorial")
}
_MATH_FUNCTIONS |= {"abs": abs, "round": round, "min": min, "max": max}
_MATH_NAMES = {"pi": math.pi, "e": math.e}


@tool(inline=True)
def calculator(expression: Annotated[str, Field(min_length=1)]) -> int | float:
    """Evaluate an arithmetic expression such as "17*23" or "sqrt(2) + 3**2". Returns the result."""
    from simpleeval import EvalWithCompoundTypes, InvalidExpression, NumberTooHigh

    evaluator = EvalWithCompoundTypes(functions=_MATH_FUNCTIONS, names=_MATH_NAMES)
    try:
        value = evaluator.eval(expression.replace("^", "**").replace("×", "*").replace("÷", "/"))
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (InvalidExpression, NumberTooHigh, SyntaxError, TypeError, ValueError, OverflowError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None
    if not isinstance(value, int | float):
        raise ToolError(f"{expression!r} is not an arithmetic expression")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return value  # a number: a workflow step reads it as one (the model reads its text)


@tool(inline=True)
def current_time(timezone: str = "UTC") -> str:
    """The current date and time in an IANA timezone such as "Europe/Paris" (default UTC), ISO 8601."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown timezone {timezone!r}; use an IANA name such as 'Europe/Paris'") from None
    return datetime.now(zone).isoformat(timespec="seconds")


@tool(timeout=20.0)
async def http_get(url: str, max_chars: Annotated[int, Field(ge=1)] = 4000) -> str:
    """Fetch a web page or API over HTTP(S) GET and return the start of its body as text."""
    import httpx

    from halguru.tools.netpin import fetch, pinned_client

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ToolError(f"not an http(s) URL: {url!r}")
    # Resolved once and connected to the address checked: DNS rebinding cannot swap in a private one.
    async with pinned_client(not get_settings().http_allow_private, timeout=15, follow_redirects=False) as client:
        try:
            response, text = await fetch(client, "GET", url)
        except httpx.HTTPError as exc:
            raise ToolError(f"GET {url} failed: {exc}") from None
    body = text[:max_chars]
    return f"HTTP {response.status_code}\n{body}"


BUILTIN_TOOLS = (calculator, current_time, http_get)
