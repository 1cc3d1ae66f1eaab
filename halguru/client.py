"""A Python client for a halguru server's /v1 API: ``Client`` (sync) and ``AsyncClient`` (asyncio), over httpx.

    from halguru.client import Client

    with Client("http://127.0.0.1:8000", api_key="hg_...") as hg:
        chat = hg.new_conversation("support")
        print(hg.send(chat.id, "Hello").output)              # the whole answer (RunOut)
        for event in hg.stream(chat.id, "And then?"):        # typed run events, as the server emits them
            if event.type == "token":
                print(event.text, end="")

Answers are the server's own models (``halguru.api_schemas``) and events (``halguru.agents.events``).
A 429 or 503 (rate limit, a full model queue, a draining server) is retried ``max_retries`` times, waiting
what ``Retry-After`` says or else an exponential backoff; other failures raise a ``ClientError`` subclass.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from halguru.agents.events import Event, parse_event
from halguru.api_schemas import (
    AgentOut,
    ConversationOut,
    ConversationPage,
    DeploymentList,
    DeploymentOut,
    MessageList,
    MessageOut,
    RunCancelOut,
    RunDetail,
    RunOut,
)
from halguru.client_errors import (
    AuthError,
    ClientError,
    Conflict,
    NotFound,
    RateLimited,
    StreamCut,
    StreamError,
    TakenOver,
    TimedOut,
    Unavailable,
    Unreachable,
    error_for,
    in_time,
    retry_after,
)
from halguru.errors import exception_line

__all__ = ["AsyncClient", "AuthError", "Client", "ClientError", "Conflict", "NotFound", "RateLimited",
           "StreamCut", "StreamError", "TakenOver", "TimedOut", "Unavailable", "Unreachable"]

RETRY_STATUSES = frozenset({429, 503})
# A 503 of these types answered a request the server had taken: a message stored and its run cut off by a
# shutdown (stored as interrupted). Sent again, it would be a second turn with the same text: not retried.
TAKEN_TYPES = frozenset({"shutdown"})
Model = TypeVar("Model", bound=BaseModel)
Item = TypeVar("Item", covariant=True)
OnRetry = Callable[[int, float, httpx.Response], None]  # (attempt, seconds to wait, the refused response)


def _keyed(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}



class _Page(Protocol[Item]):
    """A page of a list: its items and the cursor of the next page (None: the last)."""

    @property
    def data(self) -> Sequence[Item]: ...
    @property
    def next_cursor(self) -> str | None: ...


def _every(page: Callable[[str | None], _Page[Item]]) -> Iterator[Item]:
    """Every item of a list, page after page (``page(cursor)``, None first) until a page has no next cursor."""
    cursor: str | None = None
    while True:
        got = page(cursor)
        yield from got.data
        if not (cursor := got.next_cursor):
            return


async def _every_async(page: Callable[[str | None], Awaitable[_Page[Item]]]) -> AsyncIterator[Item]:
    cursor: str | None = None
    while True:
        got = await page(cursor)
        for item in got.data:
            yield item
        if not (cursor := got.next_cursor):
            return


class _Retry:
    """When to try again: a 429 or 503, ``max_retries`` times, after ``Retry-After`` (capped at ``max_wait``)
    or an exponential backoff with jitter."""

    def __init__(self, max_retries: int, backoff: float, max_wait: float):
        for name, value in (("max_retries", max_retries), ("backoff", backoff), ("max_wait", max_wait)):
            if not value >= 0:  # NaN too
                raise ValueError(f"{name} must be 0 or more, not {value!r}")
        self.max_retries, self.backoff, self.max_wait = max_retries, backoff, max_wait

    def wait(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: give up (or nothing to retry)."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        told = retry_after(response)
        if told is not None:
            return min(told, self.max_wait)
        return min(self.backoff * 2 ** attempt * (0.5 + random.random()), self.max_wait)


class _SSE:
    """Splits an SSE body into typed events (comments and keep-alives skipped), and knows whether its run
    finished."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        self.buffer = ""
        self.last_id = ""
        self.run_id: str | None = None  # the first run_started's (a team's members' runs come inside it)
        self.finished = False

    @contextmanager
    def whole(self) -> Iterator[None]:
        """Reading the body: ``TimedOut`` for no bytes in time, ``StreamCut`` for a body that breaks off, or ends,
        before its run's ``run_finished``."""
        try:
            with in_time(self.request):
                yield
        except TimedOut:
            raise
        except httpx.TransportError as exc:
            raise self._cut(f"broke off before the run finished ({exception_line(exc)})") from exc
        if not self.finished:
            raise self._cut("ended before the run finished")

    def _cut(self, what: str) -> StreamCut:
        run = f" of run {self.run_id}" if self.run_id else ""
        then = f": run({self.run_id!r}) says how it ended" if self.run_id else ""
        error = StreamCut(200, "stream_cut", f"the stream{run} {what}{then}")
        error.request = self.request
        return error

    def feed(self, text: str) -> Iterator[Event]:
        """The events completed by ``text``, each as soon as it is parsed (a fatal error raises after them)."""
        self.buffer = (self.buffer + text).replace("\r\n", "\n")  # a CR ending one chunk meets its LF here
        while "\n\n" in self.buffer:
            block, self.buffer = self.buffer.split("\n\n", 1)
            data = "\n".join(line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:"))
            for line in block.split("\n"):
                if line.startswith("id:"):
                    self.last_id = line[3:].strip()
            if data:
                event = _event(data)
                if event.type == "run_started" and self.run_id is None:
                    self.run_id = event.run_id
                elif event.type == "run_finished" and event.run_id == self.run_id:
                    self.finished = True
                yield event


def _event(data: str) -> Event:
    try:
        return parse_event(data)
    except ValidationError:
        raw = json.loads(data)
        if isinstance(raw, dict) and raw.get("type") == "error":  # the server's own end of a stream
            wait = raw.get("retry_after")  # conversation_busy: when sending again gets past
            raise StreamError(200, str(raw.get("kind", "error")), str(raw.get("message", "")),
                              float(wait) if isinstance(wait, int | float) else None) from None
        raise


class _Base:
    def __init__(self, base_url: str, api_key: str | None, *, max_retries: int, backoff: float, max_wait: float,
                 on_retry: OnRetry | None):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.retry = _Retry(max_retries, backoff, max_wait)
        self.on_retry = on_retry

    def _build(self, http: httpx.Client | httpx.AsyncClient, method: str, path: str, accept: str | None,
               **kwargs: Any) -> httpx.Request:
        headers = {**self.headers, "Accept": accept} if accept else self.headers
        headers = {**headers, **kwargs.pop("headers", {})}
        return http.build_request(method, self.base_url + path, headers=headers, **kwargs)

    def _wait(self, attempt: int, response: httpx.Response, body: bytes) -> float:
        """Seconds before the next try, or raise the error for ``response`` (not retried, or retried enough)."""
        error = error_for(response, body)
        wait = None if error.type in TAKEN_TYPES else self.retry.wait(attempt, response)
        if wait is None:
            raise error
        if self.on_retry is not None:
            self.on_retry(attempt, wait, response)
        return wait

    @staticmethod
    def _page_params(agent: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if agent:
            params["agent"] = agent
        if cursor:
            params["cursor"] = cursor
        return params

    @staticmethod
    def _parse(model: type[Model], response: httpx.Response) -> Model:
        if response.status_code == 202:
            raise TakenOver(202, "taken_over", str(response.json().get("message", "held for an operator")),
                            request_id=response.headers.get("x-request-id"))
        return model.model_validate(response.json())


class Client(_Base):
    """The /v1 API, synchronously. ``api_key``: a key from ``halguru keys create``; ``http``: your own
    ``httpx.Client`` (its base URL is ignored)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 30.0, on_retry: OnRetry | None = None,
                 http: httpx.Client | None = None):
        super().__init__(base_url, api_key, max_retries=max_retries, backoff=backoff, max_wait=max_wait,
                         on_retry=on_retry)
        self.http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections (its ``httpx.Client``, yours too when given); ``with Client(...)`` does."""
        self.http.close()

    def _request(self, method: str, path: str, accept: str | None = None, **kwargs: Any) -> httpx.Response:
        """One call, retried on 429/503; the response is open (streamed) until read or closed."""
        request = self._build(self.http, method, path, accept, **kwargs)
        for attempt in range(self.retry.max_retries + 1):
            with in_time(request):
                response = self.http.send(request, stream=True)
                if response.is_success:
                    return response
                body = response.read()
            response.close()
            time.sleep(self._wait(attempt, response, body))
        raise AssertionError("unreachable")

    def _read(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, its whole answer read."""
        response = self._request(method, path, **kwargs)
        with in_time(response.request):
            response.read()
        return response

    def _json(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return self._parse(model, self._read(method, path, **kwargs))

    def agents(self) -> list[AgentOut]:
        """The agents this server serves that your key may use."""
        return [AgentOut.model_validate(a) for a in self._read("GET", "/v1/agents").json()["data"]]

    def new_conversation(self, agent: str, title: str = "") -> ConversationOut:
        """Start a conversation with ``agent``; send messages to its ``id``."""
        return self._json(ConversationOut, "POST", "/v1/conversations", json={"agent": agent, "title": title})

    def rename_conversation(self, conversation_id: str, title: str) -> ConversationOut:
        """Give the conversation a new title."""
        return self._json(ConversationOut, "PATCH", f"/v1/conversations/{conversation_id}", json={"title": title})

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete the conversation with its messages and runs (404 ``NotFound`` if it is not there)."""
        self._read("DELETE", f"/v1/conversations/{conversation_id}")

    def conversations(self, agent: str | None = None, limit: int = 20, cursor: str | None = None) -> ConversationPage:
        """One page of your conversations, newest first (``next_cursor`` for the next)."""
        return self._json(ConversationPage, "GET", "/v1/conversations",
                          params=self._page_params(agent, limit, cursor))

    def iter_conversations(self, agent: str | None = None) -> Iterator[ConversationOut]:
        """All your conversations, newest activity first, page after page; each at most once, even as they
        change. One given a new message after the first page moved to the top: the next pass starts with it."""
        return _every(lambda cursor: self.conversations(agent, 100, cursor))

    def message_page(self, conversation_id: str, limit: int = 1000, cursor: str | None = None) -> MessageList:
        """A page of the conversation's messages, oldest first; ``next_cursor`` for the next (None: the last)."""
        return self._json(MessageList, "GET", f"/v1/conversations/{conversation_id}/messages",
                          params=self._page_params(None, limit, cursor))

    def iter_messages(self, conversation_id: str) -> Iterator[MessageOut]:
        """All the conversation's messages, oldest first, page after page."""
        return _every(lambda cursor: self.message_page(conversation_id, 1000, cursor))

    def messages(self, conversation_id: str) -> list[MessageOut]:
        """All the conversation's messages, oldest first (every page: the server sends at most 1000 at once)."""
        return list(self.iter_messages(conversation_id))

    def send(self, conversation_id: str, content: str, *, idempotency_key: str | None = None) -> RunOut:
        """Send a message; the whole answer once the run has finished. Sent again with the same
        ``idempotency_key`` (after a timeout), it gets the first answer instead of a second turn."""
        return self._json(RunOut, "POST", f"/v1/conversations/{conversation_id}/messages",
                          json={"content": content, "stream": False}, headers=_keyed(idempotency_key))

    def stream(self, conversation_id: str, content: str, *, idempotency_key: str | None = None) -> Iterator[Event]:
        """Send a message; its run's events as they happen (``token``..., ``run_finished`` last). Leaving the
        loop early closes the stream, which stops the run. ``idempotency_key`` as for ``send``."""
        response = self._request("POST", f"/v1/conversations/{conversation_id}/messages",
                                 "text/event-stream", json={"content": content, "stream": True},
                                 headers=_keyed(idempotency_key))
        if response.status_code == 202:
            response.read()
            self._parse(RunOut, response)
        parser = _SSE(response.request)
        try:
            with parser.whole():
                for text in response.iter_text():
                    yield from parser.feed(text)
        finally:
            response.close()

    def run(self, run_id: str) -> RunDetail:
        """A run of yours: its status, output and events."""
        return self._json(RunDetail, "GET", f"/v1/runs/{run_id}")

    def cancel(self, run_id: str) -> RunCancelOut:
        """Stop a running run (on whichever replica runs it); its status once it has ended."""
        return self._json(RunCancelOut, "POST", f"/v1/runs/{run_id}/cancel")

    def me(self) -> dict[str, Any]:
        """Who this key is (``GET /auth/me``): user, role, permissions."""
        return dict(self._read("GET", "/auth/me").json())

    def publish(self, bundle: bytes) -> DeploymentOut:
        """Upload an agent bundle (``halguru.deploy.bundle.make_bundle``); the version now served."""
        return self._json(DeploymentOut, "POST", "/v1/deployments", content=bundle,
                          headers={"Content-Type": "application/gzip"})

    def deployments(self, agent: str | None = None) -> list[DeploymentOut]:
        """Every published version (of ``agent``); ``active`` marks the one served."""
        params = {"agent": agent} if agent else {}
        return self._json(DeploymentList, "GET", "/v1/deployments", params=params).data

    def rollback(self, agent: str, version: int) -> DeploymentOut:
        """Serve an earlier (or later) published version of ``agent``."""
        return self._json(DeploymentOut, "POST", f"/v1/deployments/{agent}/rollback", json={"version": version})

    def delete_version(self, agent: str, version: int) -> DeploymentOut:
        """Delete a stored version of ``agent`` (not the one served); the version deleted."""
        return self._json(DeploymentOut, "DELETE", f"/v1/deployments/{agent}/versions/{version}")

    def unpublish(self, agent: str) -> DeploymentOut:
        """Serve no version of ``agent`` (its versions stay stored: ``rollback`` serves one again); the version
        taken down."""
        return self._json(DeploymentOut, "POST", f"/v1/deployments/{agent}/unpublish")


class AsyncClient(_Base):
    """The /v1 API for asyncio: the same methods as ``Client``, awaited (``stream`` is an async iterator)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 30.0, on_retry: OnRetry | None = None,
                 http: httpx.AsyncClient | None = None):
        super().__init__(base_url, api_key, max_retries=max_retries, backoff=backoff, max_wait=max_wait,
                         on_retry=on_retry)
        self.http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (``async with AsyncClient(...)`` does)."""
        await self.http.aclose()

    async def _request(self, method: str, path: str, accept: str | None = None, **kwargs: Any) -> httpx.Response:
        request = self._build(self.http, method, path, accept, **kwargs)
        for attempt in range(self.retry.max_retries + 1):
            with in_time(request):
                response = await self.http.send(request, stream=True)
                if response.is_success:
                    return response
                body = await response.aread()
            await response.aclose()
            await asyncio.sleep(self._wait(attempt, response, body))
        raise AssertionError("unreachable")

    async def _read(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._request(method, path, **kwargs)
        with in_time(response.request):
            await response.aread()
        return response

    async def _json(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return self._parse(model, await self._read(method, path, **kwargs))

    async def agents(self) -> list[AgentOut]:
        """The agents this server serves that your key may use."""
        return [AgentOut.model_validate(a) for a in (await self._read("GET", "/v1/agents")).json()["data"]]

    async def new_conversation(self, agent: str, title: str = "") -> ConversationOut:
        """Start a conversation with ``agent``; send messages to its ``id``."""
        return await self._json(ConversationOut, "POST", "/v1/conversations", json={"agent": agent, "title": title})

    async def rename_conversation(self, conversation_id: str, title: str) -> ConversationOut:
        """Give the conversation a new title."""
        return await self._json(ConversationOut, "PATCH", f"/v1/conversations/{conversation_id}",
                                json={"title": title})

    async def delete_conversation(self, conversation_id: str) -> None:
        """Delete the conversation with its messages and runs (404 ``NotFound`` if it is not there)."""
        await self._read("DELETE", f"/v1/conversations/{conversation_id}")

    async def conversations(self, agent: str | None = None, limit: int = 20,
                            cursor: str | None = None) -> ConversationPage:
        """One page of your conversations, newest first (``next_cursor`` for the next)."""
        return await self._json(ConversationPage, "GET", "/v1/conversations",
                                params=self._page_params(agent, limit, cursor))

    def iter_conversations(self, agent: str | None = None) -> AsyncIterator[ConversationOut]:
        """All your conversations, newest activity first, page after page (``async for``), each at most once."""
        return _every_async(lambda cursor: self.conversations(agent, 100, cursor))

    async def message_page(self, conversation_id: str, limit: int = 1000,
                           cursor: str | None = None) -> MessageList:
        """A page of the conversation's messages, oldest first; ``next_cursor`` for the next (None: the last)."""
        return await self._json(MessageList, "GET", f"/v1/conversations/{conversation_id}/messages",
                                params=self._page_params(None, limit, cursor))

    def iter_messages(self, conversation_id: str) -> AsyncIterator[MessageOut]:
        """All the conversation's messages, oldest first, page after page (``async for``)."""
        return _every_async(lambda cursor: self.message_page(conversation_id, 1000, cursor))

    async def messages(self, conversation_id: str) -> list[MessageOut]:
        """All the conversation's messages, oldest first (every page)."""
        return [message async for message in self.iter_messages(conversation_id)]

    async def send(self, conversation_id: str, content: str, *, idempotency_key: str | None = None) -> RunOut:
        """Send a message; the whole answer once the run has finished (``idempotency_key``: as ``Client.send``)."""
        return await self._json(RunOut, "POST", f"/v1/conversations/{conversation_id}/messages",
                                json={"content": content, "stream": False}, headers=_keyed(idempotency_key))

    async def stream(self, conversation_id: str, content: str, *,
                     idempotency_key: str | None = None) -> AsyncIterator[Event]:
        """Send a message; its run's events as they happen (``async for``). Leaving the loop early closes the
        stream, which stops the run (once the event loop has closed the generator)."""
        response = await self._request("POST", f"/v1/conversations/{conversation_id}/messages",
                                       "text/event-stream", json={"content": content, "stream": True},
                                       headers=_keyed(idempotency_key))
        if response.status_code == 202:
            await response.aread()
            self._parse(RunOut, response)
        parser = _SSE(response.request)
        try:
            with parser.whole():
                async for text in response.aiter_text():
                    for event in parser.feed(text):
                        yield event
        finally:
            await response.aclose()

    async def run(self, run_id: str) -> RunDetail:
        """A run of yours: its status, output and events."""
        return await self._json(RunDetail, "GET", f"/v1/runs/{run_id}")

    async def cancel(self, run_id: str) -> RunCancelOut:
        """Stop a running run (on whichever replica runs it); its status once it has ended."""
        return await self._json(RunCancelOut, "POST", f"/v1/runs/{run_id}/cancel")

    async def me(self) -> dict[str, Any]:
        """Who this key is (``GET /auth/me``): user, role, permissions."""
        return dict((await self._read("GET", "/auth/me")).json())

    async def publish(self, bundle: bytes) -> DeploymentOut:
        """Upload an agent bundle (``halguru.deploy.bundle.make_bundle``); the version now served."""
        return await self._json(DeploymentOut, "POST", "/v1/deployments", content=bundle,
                                headers={"Content-Type": "application/gzip"})

    async def deployments(self, agent: str | None = None) -> list[DeploymentOut]:
        """Every published version (of ``agent``); ``active`` marks the one served."""
        params = {"agent": agent} if agent else {}
        return (await self._json(DeploymentList, "GET", "/v1/deployments", params=params)).data

    async def rollback(self, agent: str, version: int) -> DeploymentOut:
        """Serve an earlier (or later) published version of ``agent``."""
        return await self._json(DeploymentOut, "POST", f"/v1/deployments/{agent}/rollback", json={"version": version})

    async def delete_version(self, agent: str, version: int) -> DeploymentOut:
        """Delete a stored version of ``agent`` (not the one served); the version deleted."""
        return await self._json(DeploymentOut, "DELETE", f"/v1/deployments/{agent}/versions/{version}")

    async def unpublish(self, agent: str) -> DeploymentOut:
        """Serve no version of ``agent`` (its versions stay stored: ``rollback`` serves one again); the version
        taken down."""
        return await self._json(DeploymentOut, "POST", f"/v1/deployments/{agent}/unpublish")
