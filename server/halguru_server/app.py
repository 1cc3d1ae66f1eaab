"""The app factory: ``create_app(settings)`` builds the whole serve-mode application."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from halguru import __version__
from halguru.agents import telemetry
from halguru.jobs.pipeline import StoreSink
from halguru_server import (
    api,
    audit,
    channels_api,
    console,
    deployments,
    deployments_api,
    errors,
    jobs_api,
    keys_api,
    openai_api,
    openai_embeddings,
    openai_responses,
    ops,
    sessions,
    web,
)
from halguru_server.agents import load_agents
from halguru_server.attachments import router as attachments_router
from halguru_server.bodies import GuardedRoute
from halguru_server.clients_web import router as clients_web_router
from halguru_server.connections import configure_connections, quiet_accept_failures
from halguru_server.conversations_api import router as conversations_router
from halguru_server.deployments import AgentRegistry
from halguru_server.gate import ModelGate
from halguru_server.identity import (
    account_routes,
    device_routes,
    local_routes,
    mailer,
    oidc_routes,
    session_routes,
    users_routes,
)
from halguru_server.inflight import InFlight
from halguru_server.lifecycle import Lifecycle
from halguru_server.metrics import Metrics
from halguru_server.middleware import RequestMiddleware, StaticGZip, configure_logging
from halguru_server.plugin_routes import add_plugin_routes
from halguru_server.push import Pusher
from halguru_server.push_api import router as push_router
from halguru_server.ratelimit import make_limiter
from halguru_server.settings import ServerSettings
from halguru_server.state import ServerState
from halguru_server.worker import load_all_channels, make_worker

if TYPE_CHECKING:
    from halguru.jobs.worker import Worker

log = logging.getLogger("halguru.server")
# Headers a browser's script may read: what the OpenAI SDKs read before retrying, and the request's id
CORS_EXPOSED = ["x-request-id", "retry-after", "x-should-retry", "content-length"]
SETTINGS_ENV = "HALGURU_SERVE_SETTINGS_JSON"  # how `halguru serve --workers N` hands settings to each worker


def _worker_ended(task: asyncio.Task[None]) -> None:
    """The in-process worker stopped: expected at shutdown; otherwise logged (and /readyz says so)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the in-process worker stopped", exc_info=task.exception())


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Load the agents, open the store and wire every route; plugins add theirs via ``register_routes``."""
    settings = settings or ServerSettings()
    settings.check()
    state, worker = _open_state(settings)
    app = FastAPI(title="halguru", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=_lifespan(state, worker),  # /openapi.json is ours, guarded (_swagger)
                  description="Agents behind a REST API, an OpenAI-compatible endpoint and a web chat. "
                              "Send `Authorization: Bearer KEY` (keys: `halguru keys create NAME`).")
    app.state.halguru = state
    app.router.route_class = GuardedRoute  # the app's own routes and a plugin's on ``app``, as every router's
    errors.install(app)
    errors.document_body_errors(app)
    _include_routes(app, settings)
    add_plugin_routes(app)  # after halguru's own: a plugin's route of a taken path is left out, and said
    app.add_middleware(StaticGZip)
    app.add_middleware(RequestMiddleware, metrics=state.metrics, max_body=settings.max_body_bytes,
                       loopback_only=settings.dev, replica=settings.replica_id,
                       max_bundle=settings.max_bundle_bytes, draining=lambda: state.draining)
    if settings.cors_origins:  # outermost: its preflight answer and headers cover every route and error
        from starlette.middleware.cors import CORSMiddleware

        # A key in Authorization, not cookies: no credentials, so a page cannot act with a visitor's session
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=CORS_EXPOSED, max_age=600)
    return app


def _open_state(settings: ServerSettings) -> tuple[ServerState, Worker | None]:
    """The app's shared state (store, agents, channels, metrics, model gate) and its in-process worker, if any.

    Everything that can fail on a bad configuration happens here, before anything listens or works."""
    from halguru.store import open_store

    store = open_store()
    # the operator's secret first; else the store's, so sessions outlive a restart (every replica shares it)
    settings.session_secret = settings.session_secret or sessions.stored_secret(store)
    from halguru_server.identity.accounts import enforce_2fa_roles

    enforce_2fa_roles(store, settings.auth)  # require_2fa_roles may have grown since people signed in
    agents = AgentRegistry(load_agents(settings.agents, settings.web_chat))
    channels = load_all_channels(agents)  # a bad channels: section fails here, before anything listens
    metrics = Metrics(tools={t for served in agents.values() for t in declared_tools(served.agent)})
    metrics.watch_jobs(store.job_stats)
    if settings.worker:  # the fetching channels run in this process's worker
        metrics.watch_sources(channels)
    state = ServerState(
        settings=settings, agents=agents, store=store, metrics=metrics,
        # /metrics is public: a model's label is its file's name without the folders (as /status shows it)
        gate=ModelGate(settings.queue_size, lambda m, d: metrics.queue_depth.labels(ops.model_label(m)).set(d),
                       client_share=settings.client_queue_share),
        limiter=make_limiter(settings.public_rate_per_minute, store),
        in_flight=InFlight(settings.max_in_flight),
        lifecycle=Lifecycle(settings.drain_delay, settings.shutdown_timeout), channels=channels,
        pusher=Pusher(store, settings.push, settings.auth.public_url) if settings.push.enabled else None)
    deployments.sync(state)  # the published agents' active versions, before anything listens or works
    deployments.sweep_incoming()  # what a publish killed midway left unpacked
    worker = make_worker(store, agents, channels, state.gate, metrics, settings.worker_settings(),
                         settings.concurrency, state.pusher) if settings.worker else None
    state.sink = StoreSink(store, worker.wake if worker else None, settings.max_input_chars)
    return state, worker


def _lifespan(state: ServerState, worker: Worker | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What runs while the server listens: the worker, the shared MCP servers and the background loops
    (status history, metrics mirror, deployments), all stopped in order at shutdown."""
    settings, metrics = state.settings, state.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.dev:
            log.warning("dev mode: API keys are OFF; listening on loopback only")
        if settings.auth.smtp is not None and not settings.auth.public_url:
            log.warning(mailer.NO_PUBLIC_URL)
        state.lifecycle.install(asyncio.get_running_loop())
        quiet_accept_failures(asyncio.get_running_loop())
        pool = None
        from halguru.tools.mcp import keep_servers_running

        if settings.keep_mcp_servers and any(served.agent.uses_mcp() for served in state.agents.values()):
            pool = keep_servers_running()  # MCP servers start once, not per request
        working = state.worker_task = asyncio.create_task(worker.run(), name="worker") if worker else None
        if working is not None:
            working.add_done_callback(_worker_ended)
        if worker is not None:
            state.lifecycle.on_stopping.append(worker.stop)  # SIGTERM: claim nothing new; running jobs finish
        loops = _start_loops(app, state)
        yield
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        metrics.process_ended()
        if worker is not None and working is not None:
            worker.stop()  # running jobs get the shutdown timeout, then go back to the queue
            await working
        if pool is not None:
            await pool.close()
        if state.pusher is not None:
            state.pusher.close()
        telemetry.shutdown()  # the spans still buffered go out (uvicorn ends on SIGTERM re-raised: no atexit)
        log.info("stopped", extra={"fields": {"pid": os.getpid()}})

    return lifespan


def _start_loops(app: FastAPI, state: ServerState) -> tuple[asyncio.Task[None], ...]:
    """The background loops of a listening server: the status history, the metrics mirror, the follower of
    published deployments and the in-flight counts shared with the other processes (cancelled at shutdown)."""
    sampling = asyncio.create_task(console.keep_sampling(app, state), name="status-history")
    mirroring = asyncio.create_task(state.metrics.keep_mirroring(), name="metrics-mirror")
    polling = asyncio.create_task(deployments.follow(lambda: deployments.sync(state),
                                                     state.settings.deployments_poll), name="deployments")
    loops = sampling, mirroring, polling
    if state.settings.dev:  # --dev counts no requests in flight
        return loops
    return *loops, asyncio.create_task(state.in_flight.keep_sharing(state.store), name="in-flight-share")


def _include_routes(app: FastAPI, settings: ServerSettings) -> None:
    """halguru's own routes, pages and static files (their order is the OpenAPI document's)."""
    for router in (api.router, jobs_api.router, keys_api.router, openai_api.router, openai_embeddings.router,
                   openai_responses.router, ops.router, web.router,
                   web.pages, channels_api.router, oidc_routes.router, local_routes.router, account_routes.router,
                   session_routes.router, users_routes.router, audit.router, clients_web_router, attachments_router,
                   conversations_router, deployments_api.router, device_routes.router, device_routes.pages_router,
                   push_router):
        app.include_router(router)
    console.install(app)
    app.mount("/chat/static", web.SecureStatic(directory=web.STATIC), name="chat-static")
    if settings.auth.proxy is not None:
        from halguru_server.identity import proxy

        proxy.install(app, settings.auth.proxy)
    _swagger(app)


def _swagger(app: FastAPI) -> None:
    """/swagger with Swagger UI's files served from here (the fastapi-offline wheel ships them): no CDN, so
    the docs work offline and the page loads nothing from elsewhere."""
    from importlib.resources import files

    from fastapi import Depends
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from halguru_server.identity.guards import public
    from halguru_server.openapi_security import document_security

    document_security(app)  # the Authorize button, and a lock on each route that takes a key
    assets = str(files("fastapi_offline") / "static")
    app.mount("/swagger-assets", StaticFiles(directory=assets), name="swagger-assets")

    encoded: list[bytes] = []  # the document does not change while the app runs: encoded once, when first asked

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(public)])
    async def openapi() -> Response:
        # Public and 150 KB: encoded per request, on a route thread, 50 anonymous clients asking at once made
        # another user's request time out (5 s). Now the bytes are kept, and answered on the event loop.
        if not encoded:
            encoded.append(await asyncio.to_thread(lambda: bytes(JSONResponse(app.openapi()).body)))
        return Response(encoded[0], media_type="application/json")

    @app.get("/swagger", include_in_schema=False, dependencies=[Depends(public)])
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="halguru API",
                                   swagger_js_url="/swagger-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger-assets/swagger-ui.css",
                                   swagger_favicon_url="/favicon.ico",
                                   swagger_ui_parameters={"validatorUrl": None})


def declared_tools(agent: Any) -> set[str]:
    """The tool names an agent may call (its own, HTTP and MCP tools as loaded): the metrics' label values."""
    return {str(name) for name in (getattr(agent, "tools", None) or {})} | set(agent.spec.tools)


def app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker runs: each worker rebuilds the app from the parent's settings.

    A worker is a fresh (spawned) process: the parent's JSON logging is not inherited, so it is set up here,
    before uvicorn's "Started server process" line, or the worker's start-up and request lines are lost."""
    settings = ServerSettings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level)
    configure_connections(settings)
    return create_app(settings)

