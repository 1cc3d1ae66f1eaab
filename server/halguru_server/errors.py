"""One error shape for every failure: ``{"error": {"type", "message"}}`` with the right status code; on the
OpenAI-compatible routes, OpenAI's own: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from halguru.errors import HalguruError, StoreTimeout, StoreUnavailable, exception_line
from halguru_server.gate import QueueFull
from halguru_server.schemas import ErrorBody

_TYPES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_type",
          422: "invalid_request", 429: "rate_limited", 503: "unavailable"}
STORE_RETRY_AFTER_S = 5  # a database outage: clients (and our own client's retries) come back after this
# The paths OpenAI clients call (the routes of openai_api, and the OpenAI routes halguru does not offer, whose
# 404 an OpenAI client should read too): their errors take OpenAI's shape.
OPENAI_PATHS = ("/v1/chat/", "/v1/models", "/v1/completions", "/v1/embeddings", "/v1/responses")
# The same paths without /v1: what an OpenAI client calls when its base URL was given without it
ROOTLESS_OPENAI = re.compile(r"/(chat/completions|models(/.*)?|completions|embeddings|responses)/?")
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                 429: "rate_limit_error"}  # other 4xx: invalid_request_error; 5xx: server_error
_OPENAI_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # what a 405's Allow may list


class ApiError(Exception):
    """A refusal: its status, one-line message, machine-readable type and, where one field of the request is at
    fault, that field (``param``, as OpenAI's errors name it)."""

    def __init__(self, status: int, message: str, type: str | None = None, headers: dict[str, str] | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.type = type or _TYPES.get(status, "error")
        self.headers, self.param = headers, param


def openai_error(status: int, message: str, kind: str, param: str | None = None) -> dict[str, str | None]:
    """An error as OpenAI writes it: its type from the status (``invalid_request_error``, ``authentication_error``,
    ``permission_error``, ``not_found_error``, ``rate_limit_error``, ``server_error``) and halguru's own type as
    the ``code`` (``model_not_found``, ``invalid_api_key``, ``queue_full``...), so clients can tell cases apart."""
    kind_of = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind_of, "param": param, "code": _OPENAI_CODES.get(kind, kind)}


def error_response(status: int, message: str, type: str | None = None, headers: dict[str, str] | None = None,
                   *, path: str = "", param: str | None = None) -> JSONResponse:
    """The error body for a request to ``path``: OpenAI's shape on the OpenAI-compatible routes, else halguru's."""
    kind = type or _TYPES.get(status, "error")
    openai = path.startswith(OPENAI_PATHS)
    if openai and status == 422:  # OpenAI answers a mistyped or out-of-range field with a 400, as its SDKs expect
        status = 400
    detail = openai_error(status, message, kind, param) if openai else {"type": kind, "message": message}
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def json_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def field_of(errors: list[Any]) -> str | None:
    """The request field the first validation error is about (``messages.0.content``), None for the whole body;
    without the names pydantic gives the members of a union (``constrained-str``, ``list[constrained-str]``)."""
    where = ".".join(str(p) for p in _first(errors).get("loc", ()) if p != "body" and not _member(p)) \
        if errors else ""
    return where or None


def _member(part: Any) -> bool:
    """Whether a place in an error's ``loc`` is the name pydantic gives a union's member: a type's (``str``,
    ``literal['none','auto']``, ``list[dict[str,any]]``, ``constrained-str``) or a model's (``NamedToolChoice``);
    request fields are lower case."""
    return isinstance(part, str) and ("[" in part or "-" in part or part[:1].isupper()
                                      or part in ("str", "int", "float", "bool"))


def _mismatch(error: Any) -> bool:
    """An error saying the value is not of a union member's kind at all (it is of another's, maybe)."""
    kind = str(error.get("type", ""))
    return kind.endswith("_type") or kind == "literal_error"


def _first(errors: list[Any]) -> Any:
    """The error to report: of a union's members (``stop``: a string or a list of them), the one the value is of
    the right kind for says what is wrong with it ("at most 4 items", "tool_choice.function: Field required",
    "content.0: a valid dictionary"), not the one it is not ("a valid string", "'none', 'auto' or 'required'")."""
    def field(error: Any) -> tuple[Any, ...]:  # the place up to the union member's name
        loc = tuple(error.get("loc", ()))
        return next((loc[:i] for i, p in enumerate(loc) if _member(p)), loc)

    head = errors[0]
    if _mismatch(head):
        same = [e for e in errors if field(e) == field(head)]
        # inside a member (past its name): the value has that member's shape, and this is what is wrong in it
        inside = [e for e in same if len(e.get("loc", ())) > len(field(e)) + 1]
        return next(iter(inside), next((e for e in same if not _mismatch(e)), head))
    return head


def describe(errors: list[Any]) -> str:
    """A validation error's one line: the first field and what is wrong with it."""
    first = _first(errors)
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return f"{field_of(errors) or 'body'}: {first.get('msg', 'invalid')}"


def document_body_errors(app: FastAPI) -> None:
    """Declare, on every operation taking a JSON body, the 400 (not JSON), 413 (too big, or too many JSON items:
    ``bodies``) and 415 (not sent as JSON) that
    ``install``'s handlers answer for any such route; the document listed them on a few routes only, so
    generated clients and fuzzers met undocumented statuses. Each takes the shape of the route's own 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            answers = operation.setdefault("responses", {})
            content = answers.get("422", {}).get("content")
            for code in ("400", "413", "415"):
                if code not in answers and content is not None:
                    answers[code] = {"description": _TYPES[int(code)], "content": content}
        for path, ops in schema.get("paths", {}).items():  # a 422 there is answered as OpenAI's 400
            for answers in (op.get("responses", {}) for op in ops.values()) if path.startswith(OPENAI_PATHS) else ():
                if (unprocessable := answers.pop("422", None)) is not None:
                    answers.setdefault("400", {**unprocessable, "description": _TYPES[400]})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class _LoggedOnce(logging.Filter):
    """Drops uvicorn's 'Exception in ASGI application' for an error the crash handler logged already: Starlette
    re-raises it after the 500 has gone out, and the log had its traceback twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record.exc_info[1] if record.exc_info else None, LOGGED, False)


LOGGED = "halguru_logged"  # set on an exception the crash handler logged
_LOGGED_ONCE = _LoggedOnce()


def install(app: FastAPI) -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    if _LOGGED_ONCE not in uvicorn_log.filters:
        uvicorn_log.addFilter(_LOGGED_ONCE)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.headers, path=request.url.path,
                              param=exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        sent = request.headers.get("content-type", "")
        if not json_type(sent) and any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing"
                                        for e in errors):
            # FastAPI parses only a JSON body: another type's (or one without a type) reached the model whole,
            # as bytes (a form's fields are checked one by one, at ("body", FIELD), and keep their 422)
            what = f"is {sent.split(';')[0].strip()!r}" if sent else "has no Content-Type"
            return error_response(415, f"the body {what}: send it as JSON, with Content-Type: application/json",
                                  "unsupported_type", path=request.url.path)
        invalid_json = bool(errors) and errors[0].get("type") == "json_invalid"
        return error_response(400 if invalid_json else 422, describe(errors), path=request.url.path,
                              param=None if invalid_json else field_of(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = getattr(exc, "headers", None)
        path = request.url.path
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {path}; see /swagger"
            if ROOTLESS_OPENAI.fullmatch(path):  # answered in OpenAI's shape, which its client shows
                message += f"; an OpenAI client's base URL ends in /v1 ({str(request.base_url).rstrip('/')}/v1)"
                path = f"/v1{path}"
        elif exc.status_code == 400 and message == "There was an error parsing the body":  # FastAPI's own words
            message = "the body is not valid JSON (not UTF-8, or nested too deeply)"
        elif exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request, headers)}
        return error_response(exc.status_code, message, headers=headers, path=path)

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(503, str(exc), "queue_full", {"Retry-After": str(exc.retry_after)},
                              path=request.url.path)

    @app.exception_handler(StoreTimeout)
    async def store_slow(request: Request, exc: StoreTimeout) -> JSONResponse:
        # the database is up: this request's statement ran past its limit and was cancelled, its connection freed
        import logging

        logging.getLogger("halguru.server").error("store statement cancelled on %s: %s", request.url.path, exc)
        return error_response(503, "the store took too long to answer this request and it was stopped "
                              "(database_statement_timeout); try a narrower request or again shortly", "store_timeout",
                              {"Retry-After": str(STORE_RETRY_AFTER_S)}, path=request.url.path)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # the operator's problem, not the client's: the database's address goes to the log, not the answer
        import logging

        logging.getLogger("halguru.server").error("store unavailable on %s: %s", request.url.path, exc)
        return error_response(503, "the store is unavailable; try again shortly", "unavailable",
                              {"Retry-After": str(STORE_RETRY_AFTER_S)}, path=request.url.path)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # the client left before its whole body came (an upload cut off): nobody reads this answer, and it is
        # no server error (a traceback in the log, a 500 in the metrics)
        return error_response(400, "the client disconnected before sending the whole body", "client_disconnected",
                              path=request.url.path)

    @app.exception_handler(HalguruError)
    async def user_error(request: Request, exc: HalguruError) -> JSONResponse:
        return error_response(400, str(exc), path=request.url.path)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside the middleware that gives each answer its X-Request-ID: it is set here,
        # so the caller (ClientError.request_id) and the log line name the same request; a plugin's route, its plugin.
        request_id = str(request.scope.get("state", {}).get("request_id", ""))
        plugin = getattr(request.scope.get("route"), "halguru_plugin", None)
        where = f"plugin {plugin!r}'s route {request.url.path}" if plugin else request.url.path
        logging.getLogger("halguru.server").exception(
            "unhandled error on %s: %s", where, exception_line(exc),
            extra={"fields": {"request_id": request_id, **({"plugin": plugin} if plugin else {})}})
        with contextlib.suppress(AttributeError):  # said: uvicorn's own line for it is left out (_LoggedOnce)
            setattr(exc, LOGGED, True)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log", "internal",
                              {"X-Request-ID": request_id} if request_id else None, path=request.url.path)


def allowed_methods(request: Request, headers: dict[str, str] | None) -> str:
    """Every method the request's path answers, for a 405's Allow: Starlette's lists the methods of the one
    route it tried (DELETE /v1/conversations said ``Allow: POST``, though GET lists them). Each method is put to
    the app's routes (a mounted app, such as the static files, gave its own Allow, which is kept)."""
    from starlette.routing import Match, Mount

    methods = {m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip()}
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    for method in HTTP_METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            methods.add(method)
    return ", ".join(sorted(methods))


def responses(*codes: int, model: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error codes a route can answer (``model``: the body, for OpenAI's shape)."""
    return {code: {"model": model, "description": _TYPES.get(code, "error")} for code in codes}
