"""The app factory: ``create_app(settings)`` builds the whole serve-mode application."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from halguru import __version__
from halguru_server import api, errors, openai_api, ops, web
from halguru_server.agents import load_agents
from halguru_server.gate import ModelGate
from halguru_server.metrics import Metrics
from halguru_server.middleware import RequestMiddleware
from halguru_server.settings import ServerSettings
from halguru_server.state import RateLimiter, ServerState

log = logging.getLogger("halguru.server")
SETTINGS_ENV = "HALGURU_SERVE_SETTINGS_JSON"  # how `halguru serve --workers N` hands settings to each worker


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Load the agents, open the store and wire every route; plugins add theirs via ``register_routes``."""
    from halguru.plugins.manager import get_plugin_manager
    from halguru.store import open_store

    settings = settings or ServerSettings()
    settings.check()
    metrics = Metrics()
    state = ServerState(
        settings=settings, agents=load_agents(settings.agents, settings.web_chat), store=open_store(),
        metrics=metrics, gate=ModelGate(settings.queue_size, lambda m, d: metrics.queue_depth.labels(m).set(d)),
        limiter=RateLimiter(settings.public_rate_per_minute))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev:
            log.warning("dev mode: API keys are OFF; listening on loopback only")
        pool = None
        from halguru.tools.mcp import keep_servers_running, uses_mcp

        if any(uses_mcp(served.agent) for served in state.agents.values()):
            pool = keep_servers_running()  # MCP servers start once, not per request
        yield
        state.draining = True
        if pool is not None:
            await pool.close()
        log.info("stopped", extra={"fields": {"pid": os.getpid()}})

    app = FastAPI(title="halguru", version=__version__, docs_url="/swagger", redoc_url=None,
                  openapi_url="/openapi.json", lifespan=lifespan,
                  description="Agents behind a REST API, an OpenAI-compatible endpoint and a web chat. "
                              "Send `Authorization: Bearer KEY` (keys: `halguru keys create NAME`).")
    app.state.halguru = state
    errors.install(app)
    for router in (api.router, openai_api.router, ops.router, web.router, web.pages):
        app.include_router(router)
    app.mount("/chat/static", StaticFiles(directory=web.STATIC), name="chat-static")
    get_plugin_manager().hook.register_routes(app=app)
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker runs: each worker rebuilds the app from the parent's settings."""
    return create_app(ServerSettings.model_validate_json(os.environ[SETTINGS_ENV]))

