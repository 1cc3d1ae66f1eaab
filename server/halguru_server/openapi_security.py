"""How /openapi.json says who may call each route: a ``bearer`` security scheme (an API key, or a signed-in
browser's session) on every guarded operation, so that /swagger shows its Authorize button and a lock on the
routes that need it, and generated clients know where the key goes.

A route every visitor may try (the web chat's, ``require(..., anonymous=True)``) takes the key as optional; a
public one (health, webhooks that check their own signature, sign-in pages) declares none.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from halguru_server.identity.guards import guards_in

SCHEME = "bearer"
_BEARER = {"type": "http", "scheme": "bearer",
           "description": "An API key (`halguru keys create NAME`), sent as `Authorization: Bearer KEY`."}


def document_security(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that its document declares the scheme and each guarded operation's use of it."""
    from halguru_server.plugin_routes import routes_of

    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        paths = schema.get("paths", {})
        for item in app.router.routes:
            for route in routes_of(item):
                guards = [g for g in guards_in(getattr(route, "dependant", None)) if g.permission is not None]
                if not guards:
                    continue
                security: list[dict[str, list[str]]] = [{SCHEME: []}]
                if all(g.anonymous for g in guards):  # the web chat's visitors may come without a key
                    security.insert(0, {})
                for method in set(getattr(route, "methods", None) or ()) - {"HEAD"}:
                    operation = paths.get(str(route.path), {}).get(method.lower())
                    if operation is not None:
                        operation["security"] = security
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = _BEARER
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
