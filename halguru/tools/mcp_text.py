"""How what an MCP server sends reads as text: a tool's result for the model, and a failure as one line that names
no secret (``shown_url``) and no pydantic report.

Apart from ``halguru.tools.mcp`` (the servers' lifecycle) so that each stays a size one can read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import mcp_types

    from halguru.tools.decorator import Tool

OPENAI_MAX_TOOLS = 128  # the most tools OpenAI's API accepts in one request (more is a 400)


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model reads: the content blocks as text, else the structured content as JSON.

    Servers that return structured content also give it as text (the spec asks them to), often in a form
    written for people, so the text wins; a bare ``{"result": ...}`` is the fallback.
    """
    parts: list[str] = []
    for block in result.content:
        if block.type == "text":
            parts.append(block.text)
        elif block.type == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif block.type == "resource_link":
            parts.append(f"[resource {block.uri}]")
        else:  # image, audio: the model cannot read the bytes; say what came back
            size = len(getattr(block, "data", ""))
            parts.append(f"[{block.type} {getattr(block, 'mime_type', '')}, {size} base64 chars]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def spec_chars(tool: Tool) -> int:
    """About what a tool costs each model call that offers it: its name, description and schema."""
    return len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))


def bulky(server: str, tools: Sequence[Tool]) -> str:
    """The warning for a server whose offered tools' specs are huge (a schema listing 20,000 cities), allow-listed
    or not: the tokens they take of every model call, and the biggest tool's share."""
    biggest = max(tools, key=spec_chars)
    return (f"mcp server '{server}': its tools' descriptions and schemas take about "
            f"{sum(map(spec_chars, tools)) // 4:,} tokens of every model call ({biggest.name} alone about "
            f"{spec_chars(biggest) // 4:,}); leave out the tools the agent does not need (tools:), or ask the server "
            "for a smaller schema")


def crowded(server: str, tools: Sequence[Tool]) -> str:
    """The warning for a server whose many tools (no allow-list) all go into every model call: how many, about how
    many tokens they cost, and the allow-list that picks a few."""
    chars = sum(map(spec_chars, tools))
    refused = f"; OpenAI refuses more than {OPENAI_MAX_TOOLS} in a request" if len(tools) > OPENAI_MAX_TOOLS else ""
    return (f"mcp server '{server}' offers {len(tools)} tools, each sent to the model at every call (about "
            f"{chars // 4:,} tokens of names, descriptions and schemas{refused}); list those the agent needs in its "
            f"tools: [{', '.join(t.name for t in tools[:2])}, ...]")


def garbled(exc: Exception) -> str:
    """What a server sent that could not be read, quoted and cut short, or the reason."""
    from pydantic import ValidationError

    errors = exc.errors() if isinstance(exc, ValidationError) else []
    found = errors[0].get("input") if errors else None
    if found is None:
        return reason_line(exc)
    text = found if isinstance(found, str) else json.dumps(found, ensure_ascii=False, default=str)
    return repr(text if len(text) <= 80 else text[:79] + "…")


USERINFO = re.compile(r"//[^/\s@'\"]+@")
REFUSED = "Server returned an error response"  # the SDK's message for any HTTP error status
OTHER_CONTENT = "Unexpected content type:"  # the SDK's message for an answer neither JSON nor SSE (a web page)


def shown_url(url: str) -> str:
    """``url`` fit to quote in an error: no ``user:password@``, query values as ``***`` (they are often tokens)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    except ValueError:
        return "(an invalid URL)"
    return urlunsplit((parts.scheme, ("***@" if "@" in parts.netloc else "") + host, parts.path, query, ""))


def reason_line(exc: BaseException) -> str:
    """A one-line reason, from the first real error inside the SDK's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    from mcp import MCPError
    from pydantic import ValidationError

    if isinstance(exc, MCPError):
        return condensed(exc.message)
    if isinstance(exc, ValidationError):  # an answer the SDK refused: pydantic's report is many lines
        return f"it sent an invalid {exc.title} ({first_problem(exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_REPORT = re.compile(r"\d+ validation errors? for \S+$")  # the head of pydantic's report, after the SDK's words
_PYDANTIC_TAIL = re.compile(r"\s*\[type=[^\]]*\]?.*$")  # [type=json_invalid, input_value=..., input_type=bytes]


def condensed(message: str) -> str:
    """An error message of the SDK's with pydantic's report in it said by its first problem, on one line. The SDK's
    HTTP transport quotes the whole report (an answer cut short: 'Failed to parse JSON response: 1 validation error
    for union[...]', the input, a link to pydantic's docs), which a trace and the model read as four lines. Any other
    message is left as it is (a server's own error text)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    head = _REPORT.sub("", lines[0]) if len(lines) > 1 else ""
    if not head or head == lines[0]:
        return message
    problem = [_PYDANTIC_TAIL.sub("", line) for line in lines[1:3] if not line.startswith("For further information")]
    where = f"{problem[0]}: " if len(problem) == 2 and "[type=" in lines[2] and "[type=" not in lines[1] else ""
    return f"{head}{where}{problem[-1] if where else problem[0]}"


def first_problem(exc: Any) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'result'}: {first['msg']}"
