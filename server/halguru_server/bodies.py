"""What a request body may cost before the route has it: a route that needs a caller admits it (API key, session)
before the body is read, and no JSON body is parsed into more items than ``max_json_items``.

FastAPI reads and parses a route's JSON body before its dependencies run, so a guard (``require``) used to refuse
an anonymous caller only after its body was parsed: a 1 MB ``[{},{},...]`` is 330,000 objects, ~26 MB, and 50
such requests at once took a server from 180 MB to 1.2 GB before their 401s. ``GuardedRoute`` (every router's
``route_class``) runs the route's guard first, without the CSRF check, the one part that may read a form's body
(the route's own guard still runs in full afterwards, on the principal resolved here), then weighs the body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from halguru_server.errors import ApiError, json_type
from halguru_server.identity.guards import admit, guards_in
from halguru_server.state import get_state

_ITEMS = (b",", b"[", b"{")


def json_items(body: bytes) -> int:
    """An upper bound on the values a JSON body parses into: its commas and opening brackets, those inside strings
    too (finding where strings end would cost more than the parse it is to spare), at C speed."""
    return sum(body.count(mark) for mark in _ITEMS)


def check_json_body(body: bytes, limit: int) -> None:
    """413 for a body that could parse into more than ``limit`` values (a parsed value costs 30-80 bytes of
    memory for each 2-5 of the body: 1 MB of ``{},`` is 26 MB parsed)."""
    items = json_items(body)
    if items > limit:
        raise ApiError(413, f"the body holds {items} JSON items (commas and opening brackets, those in strings "
                            f"too); the limit is {limit} (HALGURU_SERVE_MAX_JSON_ITEMS)", "too_large")


class GuardedRoute(APIRoute):
    """A route whose body is read only once its guard has let the caller in, and whose JSON body is weighed
    (``check_json_body``) before FastAPI parses it. A guard open to anonymous visitors (the web chat's) still
    resolves the caller first: a bad key or chat session is refused before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # the endpoint reads the body itself, if at all: after its guard
            return handler
        demand = next((g for g in guards_in(self.dependant) if g.permission is not None), None)
        form = isinstance(self.body_field.field_info, params.Form)  # Starlette bounds a form's fields and files

        async def guarded(request: Request) -> Response:
            if demand is not None:
                await admit(request, demand, csrf=False)
            if not form and json_type(request.headers.get("content-type", "")):
                check_json_body(await request.body(), get_state(request).settings.max_json_items)
            return await handler(request)

        return guarded
