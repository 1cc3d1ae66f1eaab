"""The routes plugins add (the ``register_routes`` hook), one plugin at a time after halguru's own.

A route of a plugin that a route already there would answer instead (halguru's ``/v1/agents``, another
plugin's) is never reached: it is left out with a warning naming the plugin, as a command of a taken name is.
A plugin skipped half-way (its hook raised) gives nothing: the routes and middleware it added go. A plugin's
middleware runs before every route, halguru's included, so adding one is said. A plugin
route under ``/v1`` or ``/admin`` without a guard answers without an API key, where every route of halguru's asks
for one: that is said too (docs/plugins.md shows ``Depends(require(...))``). A plugin's routes are made
``GuardedRoute``s whatever router built them (a plain ``APIRouter()``), so that an anonymous caller is refused
before its body is read and a JSON body is weighed before it is parsed, as on halguru's own routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Mount, WebSocketRoute

from halguru.api_schemas import ErrorBody
from halguru_server.bodies import guard_first
from halguru_server.identity.guards import guards_in

# A sample value per path-parameter type, so that a route's template can be matched against the others'.
_SAMPLES = {"int": "1", "float": "1", "uuid": "00000000-0000-0000-0000-000000000000"}


def add_plugin_routes(app: FastAPI) -> None:
    """Call each plugin's ``register_routes``, built-in plugins first, keeping only what can be reached."""
    from halguru.plugins.manager import plugin_hooks, skipped, warn_once

    owners = {id(route): "halguru" for route in app.router.routes}  # route -> who added it
    for plugin, builtin, register in plugin_hooks("register_routes"):
        before, middleware = list(app.router.routes), list(app.user_middleware)
        register(app=app)  # guarded: a plugin whose hook raises is skipped with a warning naming it
        added = [route for route in app.router.routes if id(route) not in owners]
        app.router.routes[:] = before  # a plugin's routes go after the others', whatever it did to the list
        if skipped(plugin):
            app.user_middleware[:] = middleware
            continue
        for layer in app.user_middleware:
            if not builtin and not any(layer is kept for kept in middleware):
                warn_once(f"plugin {plugin!r} adds middleware ({_middleware_name(layer)}): it sees every request "
                          "before halguru's routes and their API-key checks, and may answer for them")
        for item in added:  # a route, a mount, or a router the plugin included (FastAPI keeps it whole)
            for route, directly in _api_routes(item):
                guard_first(route, served_directly=directly)
                if not builtin:
                    route.halguru_plugin = plugin  # type: ignore[attr-defined]  # its errors' log line names it
            routes, dead = routes_of(item), 0
            for route in routes:
                where = _describe(route)
                taken = _answered_by(route, app.router.routes)
                if taken is not None:
                    owner = "halguru" if owners[id(taken)] == "halguru" else f"plugin {owners[id(taken)]!r}"
                    warn_once(f"plugin {plugin!r}: its route {where} is not used: {owner} answers there")
                    dead += 1
                elif not builtin and (prefix := _keyed_prefix(route)) and not _guarded(route):
                    warn_once(f"plugin {plugin!r}: its route {where} answers without an API key, unlike "
                              f"halguru's {prefix} routes; add dependencies=[Depends(require(PERMISSION))] "
                              "(docs/plugins.md)")
            if routes and dead == len(routes):
                continue  # nothing of it can be reached: left out (and out of /openapi.json)
            app.router.routes.append(item)
            owners[id(item)] = "halguru" if builtin else plugin
    _document_guards(app)


def _document_guards(app: FastAPI) -> None:
    """Declare in /openapi.json the 401 and 403 a plugin's guarded route answers (``require(...)``: no key, a role
    without the permission), as halguru's own routes declare theirs: /swagger showed only its 200 and 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        paths, documented = schema.get("paths", {}), False
        for item in app.router.routes:
            for route in routes_of(item):
                guards = [g for g in guards_in(getattr(route, "dependant", None)) if g.permission is not None]
                if not guards or getattr(original_route(route), "halguru_plugin", None) is None:
                    continue
                codes = (403,) if all(g.anonymous for g in guards) else (401, 403)
                for method in set(getattr(route, "methods", None) or ()) - {"HEAD"}:
                    operation = paths.get(str(route.path), {}).get(method.lower())
                    if operation is None:
                        continue
                    answers = operation.setdefault("responses", {})
                    for code in codes:
                        answers.setdefault(str(code), {"description": _ERRORS[code], "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
                        documented = True
        if documented:
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            if "ErrorBody" not in schemas:
                body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(body.pop("$defs", {}))
                schemas["ErrorBody"] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_ERRORS = {401: "unauthorized", 403: "forbidden"}


def _middleware_name(layer: Any) -> str:
    """``status_of_mine`` for ``@app.middleware("http")``'s function, else the middleware's class name."""
    dispatch = layer.kwargs.get("dispatch") if isinstance(getattr(layer, "kwargs", None), dict) else None
    return str(getattr(dispatch, "__name__", None) or getattr(layer.cls, "__name__", repr(layer.cls)))


def _api_routes(item: Any, directly: bool = True) -> Iterator[tuple[APIRoute, bool]]:
    """(route, whether the app serves it itself) of each ``APIRoute`` in ``item``: itself, or those of the router
    it includes, at any depth (FastAPI >= 0.120 keeps an included router whole; an older one copies its routes).
    A mounted app's are its own (its errors are not halguru's): left as they are."""
    if isinstance(item, APIRoute):
        yield item, directly
    for route in getattr(getattr(item, "original_router", None), "routes", []):
        yield from _api_routes(route, directly=False)


def routes_of(item: BaseRoute) -> list[Any]:
    """The routes ``item`` serves: itself, or each route of an included router as served (its prefix and
    dependencies applied; FastAPI >= 0.120 keeps an included router as one item)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI copies an included router's routes into the app
        return [item]
    return list(iter_route_contexts([item]))


def _answered_by(route: Any, routes: list[BaseRoute]) -> BaseRoute | None:
    """The first of ``routes`` that takes a request meant for ``route`` (Starlette serves the first full match),
    for any of its methods but HEAD; None when every request of it reaches it."""
    path = _sample_path(route)
    if isinstance(original_route(route), WebSocketRoute):
        scopes = [{"type": "websocket", "path": path}]
    else:
        methods = set(getattr(route, "methods", None) or {"GET"})
        scopes = [{"type": "http", "path": path, "method": m} for m in sorted(methods - {"HEAD"} or methods)]
    for scope in scopes:
        for other in routes:
            if other.matches({**scope, "root_path": ""})[0] == Match.FULL:
                return other
    return None


def _sample_path(route: Any) -> str:
    """A path ``route`` answers: its template with each parameter given a value of its type."""
    if isinstance(original_route(route), Mount):
        return f"{route.path}/x"
    template = str(getattr(route, "path", "/"))
    convertors: dict[str, Any] = getattr(route, "param_convertors", {})
    for name, convertor in convertors.items():
        kind = type(convertor).__name__.removesuffix("Convertor").lower()
        value = _SAMPLES.get(kind, "x")
        for spelled in (f"{{{name}}}", f"{{{name}:{kind}}}"):
            template = template.replace(spelled, value)
    return template


def original_route(route: Any) -> Any:
    """The route a FastAPI route context stands for (the route itself otherwise)."""
    return getattr(route, "original_route", route)


# Where every route of halguru's asks for a key or a session (and a cookie's CSRF token): the API and the console.
_KEYED_PREFIXES = ("/v1", "/admin")


def _keyed_prefix(route: Any) -> str | None:
    """The prefix of ``_KEYED_PREFIXES`` the route is under, if any."""
    path = str(getattr(route, "path", ""))
    return next((prefix for prefix in _KEYED_PREFIXES if path == prefix or path.startswith(prefix + "/")), None)


def _guarded(route: Any) -> bool:
    """Whether a halguru guard (``require(...)``, ``public``) is among the route's dependencies."""
    return bool(guards_in(getattr(route, "dependant", None)))


def _describe(route: Any) -> str:
    """``GET /acme/ok`` (methods but HEAD), ``WEBSOCKET /ws``, ``MOUNT /files``."""
    path = str(getattr(route, "path", "?"))
    if isinstance(original_route(route), Mount):
        return f"MOUNT {path}"
    if isinstance(original_route(route), WebSocketRoute):
        return f"WEBSOCKET {path}"
    methods = set(getattr(route, "methods", None) or {"GET"})
    return f"{','.join(sorted(methods - {'HEAD'} or methods))} {path}"
