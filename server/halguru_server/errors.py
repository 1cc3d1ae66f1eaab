"""One error shape for every failure: ``{"error": {"type", "message"}}`` with the right status code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from halguru.errors import HalguruError, StoreUnavailable
from halguru_server.gate import QueueFull
from halguru_server.schemas import ErrorBody

_TYPES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_type",
          422: "invalid_request", 429: "rate_limited", 503: "unavailable"}
STORE_RETRY_AFTER_S = 5  # a database outage: clients (and our own client's retries) come back after this


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.type = type or _TYPES.get(status, "error")
        self.headers = headers


def error_response(status: int, message: str, type: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"type": type or _TYPES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _json_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _describe(errors: list[Any]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        sent = request.headers.get("content-type", "")
        if not _json_type(sent) and any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing"
                                        for e in errors):
            # FastAPI parses only a JSON body: another type's (or one without a type) reached the model whole,
            # as bytes (a form's fields are checked one by one, at ("body", FIELD), and keep their 422)
            what = f"is {sent.split(';')[0].strip()!r}" if sent else "has no Content-Type"
            return error_response(415, f"the body {what}: send it as JSON, with Content-Type: application/json",
                                  "unsupported_type")
        status = 400 if errors and errors[0].get("type") == "json_invalid" else 422
        return error_response(status, _describe(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /swagger"
        elif exc.status_code == 400 and message == "There was an error parsing the body":  # FastAPI's own words
            message = "the body is not valid JSON (not UTF-8, or nested too deeply)"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(503, str(exc), "queue_full", {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # the operator's problem, not the client's: the database's address goes to the log, not the answer
        import logging

        logging.getLogger("halguru.server").error("store unavailable on %s: %s", request.url.path, exc)
        return error_response(503, "the store is unavailable; try again shortly", "unavailable",
                              {"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.exception_handler(HalguruError)
    async def user_error(request: Request, exc: HalguruError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("halguru.server").exception("unhandled error on %s", request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log", "internal")


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error codes a route can answer."""
    return {code: {"model": ErrorBody, "description": _TYPES.get(code, "error")} for code in codes}
