"""What a request body may cost before the route has it: a route that needs a caller admits it (API key, session)
before the body is read, and no JSON body is parsed into more items than ``max_json_items``.

FastAPI reads and parses a route's JSON body before its dependencies run, so a guard (``require``) used to refuse
an anonymous caller only after its body was parsed: a 1 MB ``[{},{},...]`` is 330,000 objects, ~26 MB, and 50
such requests at once took a server from 180 MB to 1.2 GB before their 401s. ``GuardedRoute`` (every router's
``route_class``) runs the route's guard first, without the CSRF check, the one part that may read a form's body
(the route's own guard still runs in full afterwards, on the principal resolved here), then weighs the body.
A plugin's routes get the same (``guard_first``), whatever router class it built them with.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import fastapi.routing
from fastapi import Request, Response, params
from fastapi.routing import APIRoute

from halguru_server.errors import ApiError, json_type
from halguru_server.identity.guards import admit, guards_in
from halguru_server.state import get_state

_ITEMS = (b",", b"[", b"{")
# The same marks escaped in a string (\u002c, \u005b, \u007b, either case): a string the server parses as JSON
# again (a tool call's ``arguments``) holds them as real ones: ``"{\"a\": [\u007b\u007d\u002c...]}"`` was
# counted as 2 items and parsed into 58,000 dicts per MB.
_ESCAPED = tuple(f"\\u00{code}".encode() for code in ("2c", "2C", "5b", "5B", "7b", "7B"))


def json_items(body: bytes) -> int:
    """An upper bound on the values a JSON body parses into: its commas and opening brackets, those inside strings
    too (finding where strings end would cost more than the parse it is to spare), escaped ones too (a string
    parsed again as JSON), at C speed."""
    return sum(body.count(mark) for mark in (*_ITEMS, *_ESCAPED))


def check_json_body(body: bytes, limit: int) -> None:
    """413 for a body that could parse into more than ``limit`` values (a parsed value costs 30-80 bytes of
    memory for each 2-5 of the body: 1 MB of ``{},`` is 26 MB parsed)."""
    items = json_items(body)
    if items > limit:
        raise ApiError(413, f"the body holds {items} JSON items (commas and opening brackets, those in strings "
                            f"and \\u escapes of them too); the limit is {limit} (HALGURU_SERVE_MAX_JSON_ITEMS)",
                       "too_large")


class GuardedRoute(APIRoute):
    """A route whose body is read only once its guard has let the caller in, and whose JSON body is weighed
    (``check_json_body``) before FastAPI parses it. A guard open to anonymous visitors (the web chat's) still
    resolves the caller first: a bad key or chat session is refused before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        served = _served(self)
        if served.body_field is None:  # the endpoint reads the body itself, if at all: after its guard
            return handler
        demand = next((g for g in guards_in(served.dependant) if g.permission is not None), None)
        form = isinstance(served.body_field.field_info, params.Form)  # Starlette bounds a form's fields and files

        async def guarded(request: Request) -> Response:
            if demand is not None:
                await admit(request, demand, csrf=False)
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):  # read as is, it was "not valid JSON (not UTF-8...)"
                raise ApiError(415, f"the body is sent with Content-Encoding: {encoding}; send it uncompressed",
                               "unsupported_type")
            if not form and json_type(request.headers.get("content-type", "")):
                check_json_body(await request.body(), get_state(request).settings.max_json_items)
            return await handler(request)

        return guarded


def _served(route: APIRoute) -> Any:
    """The route as FastAPI serves it. A route of an included router (FastAPI >= 0.120 keeps the router whole)
    is served with the router's prefix and dependencies (``APIRouter(dependencies=[Depends(require(...))])``)
    from a context FastAPI sets while it asks the route for its handler; without it, a router's guard was
    missed and the body parsed first. Any other route is served as it is."""
    current = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = current.get() if current is not None else None
    return context if context is not None and getattr(context, "original_route", None) is route else route


def guard_first(route: APIRoute, *, served_directly: bool) -> None:
    """Make ``route`` a ``GuardedRoute`` in place (its class, or a subclass of both): a plugin's plain
    ``APIRouter()`` builds ``APIRoute``s, whose bodies were parsed before their guard ran. A route the app serves
    directly (``served_directly``: copied there by an older FastAPI's ``include_router``) gets its handler again;
    an included router's routes are asked for theirs when first served."""
    if isinstance(route, GuardedRoute):
        return
    route.__class__ = _guarded_class(type(route))
    if served_directly:  # as APIRoute.__init__ builds it (FastAPI >= 0.12x also bounds the route's body)
        app = fastapi.routing.request_response(route.get_route_handler())
        bound = getattr(fastapi.routing, "wrap_app_with_body_limit", None)
        route.app = app if bound is None else bound(app, getattr(route, "max_body_size", None))


_GUARDED: dict[type[APIRoute], type[GuardedRoute]] = {APIRoute: GuardedRoute}


def _guarded_class(kind: type[APIRoute]) -> type[GuardedRoute]:
    """``GuardedRoute`` for a plain ``APIRoute``; for a plugin's own route class, one that is both (its
    ``get_route_handler`` wraps the plugin's)."""
    if kind not in _GUARDED:
        _GUARDED[kind] = type(f"Guarded{kind.__name__}", (GuardedRoute, kind), {})
    return _GUARDED[kind]
