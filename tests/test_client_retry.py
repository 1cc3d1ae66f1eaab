"""halguru.client's retry rules and errors, on httpx.MockTransport (the real-server tests are in tests/server)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from halguru.agents.events import RunStarted
from halguru.client import (
    AsyncClient,
    Client,
    ClientError,
    NotFound,
    RateLimited,
    StreamCut,
    StreamError,
    TimedOut,
    Unreachable,
    retry_after,
)

AGENTS = {"data": [{"name": "a", "description": "", "model": "scripted", "tools": [], "web_chat": "key"}]}


def _flaky(statuses: list[int], headers: dict[str, str]) -> httpx.MockTransport:
    """Answers each status in turn (with ``headers`` on the refusals), then 200 with one agent."""
    def handle(request: httpx.Request) -> httpx.Response:
        if statuses:
            return httpx.Response(statuses.pop(0), headers=headers,
                                  json={"error": {"type": "rate_limited", "message": "slow down"}})
        return httpx.Response(200, json=AGENTS)
    return httpx.MockTransport(handle)


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after(httpx.Response(503, headers={"Retry-After": later})) or 0) <= 30
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(503)) is None


def test_429_and_503_are_retried_after_retry_after_then_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    http = httpx.Client(transport=_flaky([429, 503], {"Retry-After": "2"}))
    assert [a.name for a in Client("http://hg", "k", http=http).agents()] == ["a"]
    assert slept == [2.0, 2.0]
    http = httpx.Client(transport=_flaky([429] * 5, {"Retry-After": "100"}))
    with pytest.raises(RateLimited) as refused:
        Client("http://hg", "k", http=http, max_retries=2, max_wait=5).agents()
    assert slept[2:] == [5.0, 5.0]  # capped at max_wait
    assert refused.value.status == 429 and refused.value.type == "rate_limited" and refused.value.retry_after == 100


def test_without_retry_after_the_backoff_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    http = httpx.Client(transport=_flaky([503, 503, 503], {}))
    Client("http://hg", http=http, backoff=1.0, max_wait=100).agents()
    assert 0.5 <= slept[0] <= 1.5 and 1 <= slept[1] <= 3 and 2 <= slept[2] <= 6


def test_a_stream_the_server_ends_with_its_own_error_raises() -> None:
    started = RunStarted(run_id="run_1", agent="a", model="scripted", input="hi", conversation_id="conv_1")
    body = (f"id: run_1:0\r\nevent: run_started\r\ndata: {started.model_dump_json()}\r\n\r\n: keep-alive\n\n"
            'event: error\ndata: {"type": "error", "kind": "shutdown", "message": "stopping", "fatal": true}\n\n')

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "text/event-stream" and request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})

    async def main() -> list[str]:
        seen: list[str] = []
        async with AsyncClient("http://hg", "k", http=httpx.AsyncClient(transport=httpx.MockTransport(handle))) as hg:
            with pytest.raises(StreamError) as ended:
                async for event in hg.stream("conv_1", "hi"):
                    seen.append(event.type)
            assert ended.value.type == "shutdown" and ended.value.message == "stopping"
        return seen

    assert asyncio.run(main()) == ["run_started"]


def test_the_async_client_has_every_method_of_the_client() -> None:
    import inspect

    public = {name for name in vars(Client) if not name.startswith("_")}
    missing = public - {name for name in vars(AsyncClient) if not name.startswith("_")}
    assert missing == set()
    deployment = {"agent": "a", "version": 2, "sha256": "0" * 64, "manifest": {}, "published_by": None, "created": 1.0,
                  "active": True, "activated": 1.0}
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/auth/me":
            return httpx.Response(200, json={"role": "user"})
        return httpx.Response(200, json={"data": [deployment]} if request.method == "GET" else deployment)

    async def main() -> None:
        async with AsyncClient("http://hg", "k", http=httpx.AsyncClient(transport=httpx.MockTransport(handle))) as hg:
            assert (await hg.me())["role"] == "user"
            assert (await hg.publish(b"tgz")).version == 2
            assert [d.version for d in await hg.deployments("a")] == [2]
            assert (await hg.rollback("a", 2)).active
            assert (await hg.delete_version("a", 1)).agent == "a"
            assert (await hg.unpublish("a")).agent == "a"
            for name in public:
                method = getattr(hg, name)
                assert inspect.iscoroutinefunction(method) or name.startswith("iter_") or name == "stream", name

    asyncio.run(main())
    assert seen == ["GET /auth/me", "POST /v1/deployments", "GET /v1/deployments", "POST /v1/deployments/a/rollback",
                    "DELETE /v1/deployments/a/versions/1", "POST /v1/deployments/a/unpublish"]


def test_a_refusal_is_one_line_with_the_request_id() -> None:
    page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center>nginx</center>\n</body>\n</html>\n"

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/runs/run_x":
            return httpx.Response(404, headers={"X-Request-ID": "req_42"},
                                  json={"error": {"type": "not_found", "message": "no run run_x"}})
        return httpx.Response(502, text=page, headers={"Content-Type": "text/html"})

    hg = Client("http://hg", "k", http=httpx.Client(transport=httpx.MockTransport(handle)))
    with pytest.raises(NotFound) as missing:
        hg.run("run_x")
    assert missing.value.request_id == "req_42" and str(missing.value) == "404 not_found: no run run_x (request req_42)"
    with pytest.raises(ClientError) as proxy:
        hg.agents()
    assert proxy.value.status == 502 and proxy.value.request_id is None
    assert "\n" not in str(proxy.value) and proxy.value.message.startswith("<html> <head><title>502 Bad Gateway")


@pytest.mark.parametrize("setting", [{"max_retries": -1}, {"backoff": -0.5}, {"max_wait": float("nan")}])
def test_a_negative_retry_setting_is_refused_when_the_client_is_made(setting: dict[str, float]) -> None:
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"^{name} must be 0 or more"):
        Client("http://hg", "k", http=httpx.Client(transport=_flaky([], {})), **setting)  # type: ignore[arg-type]


def test_a_server_that_does_not_answer_in_time_is_a_timed_out_error_saying_so() -> None:
    """httpx's ReadTimeout has an empty message: `print(f"failed: {e}")` printed "failed: " and nothing more."""
    import socket

    with socket.socket() as silent:  # takes connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Client(url, "k", timeout=0.2) as hg, pytest.raises(TimedOut) as late:
            hg.send("conv_1", "hello")
        assert isinstance(late.value, httpx.TimeoutException) and isinstance(late.value, ClientError)
        assert late.value.status == 0 and late.value.type == "timeout"
        assert str(late.value) == ("0 timeout: POST /v1/conversations/conv_1/messages: no answer within 0.2 s (read "
                                   "timeout); it may have been acted on: send a message again with the same "
                                   "idempotency_key")

        async def main() -> str:
            async with AsyncClient(url, "k", timeout=0.2) as hg:
                with pytest.raises(TimedOut) as slow:
                    [event async for event in hg.stream("conv_1", "hi")]
                with pytest.raises(httpx.TimeoutException) as listing:
                    await hg.agents()
            return f"{slow.value.message} | {listing.value}"

        assert asyncio.run(main()) == ("POST /v1/conversations/conv_1/messages: no answer within 0.2 s (read timeout);"
                                       " it may have been acted on: send a message again with the same "
                                       "idempotency_key | 0 timeout: GET /v1/agents: no answer within 0.2 s (read "
                                       "timeout)")


def test_a_server_that_cannot_be_reached_is_an_unreachable_client_error_naming_it() -> None:
    """A refused connection raised httpx's own ConnectError: `except ClientError` let it through, and its message
    named neither the call nor the server."""
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        with Client(url, "k", max_retries=0) as hg, pytest.raises(ClientError) as refused:
            hg.agents()
        assert isinstance(refused.value, Unreachable) and isinstance(refused.value, httpx.ConnectError)
        assert refused.value.status == 0 and refused.value.type == "unreachable"
        assert str(refused.value).startswith(f"0 unreachable: GET /v1/agents: cannot connect to {url}: ")
        assert str(refused.value).endswith("; is the server up?") and "\n" not in str(refused.value)

        async def main() -> None:
            async with AsyncClient(url, "k") as hg:
                with pytest.raises(Unreachable):
                    [event async for event in hg.stream("conv_1", "hi")]
                with pytest.raises(httpx.ConnectError):
                    await hg.agents()

        asyncio.run(main())


def test_a_stream_that_breaks_off_or_ends_before_its_run_finished_is_a_stream_cut() -> None:
    """A stream cut (the server killed mid-answer) raised httpx's RemoteProtocolError naming no run, and one that
    ended cleanly without its run_finished (a proxy's limit) just stopped: the loop ended as if answered."""
    started = RunStarted(run_id="run_1", agent="a", model="scripted", input="hi", conversation_id="conv_1")
    first = f"data: {started.model_dump_json()}\n\n".encode()

    class Breaking(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield first
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.headers["idempotency-key"] == "break":
            return httpx.Response(200, stream=Breaking(), headers={"Content-Type": "text/event-stream"})
        return httpx.Response(200, content=first, headers={"Content-Type": "text/event-stream"})

    hg = Client("http://hg", "k", http=httpx.Client(transport=httpx.MockTransport(handle)))
    for key, what in (("break", "broke off before the run finished (RemoteProtocolError: peer closed connection "
                                "without sending complete message body)"),
                      ("end", "ended before the run finished")):
        seen: list[str] = []
        with pytest.raises(StreamCut) as cut:
            for event in hg.stream("conv_1", "hi", idempotency_key=key):
                seen.append(event.type)
        assert seen == ["run_started"] and isinstance(cut.value, httpx.TransportError) and cut.value.status == 200
        assert cut.value.message == f"the stream of run run_1 {what}: run('run_1') says how it ended"


def test_every_public_method_of_both_clients_says_what_it_does() -> None:
    """help(AsyncClient.send), an editor's hover: eleven of AsyncClient's methods (and four of Client's) had none."""
    for client in (Client, AsyncClient):
        bare = [name for name, value in vars(client).items()
                if not name.startswith("_") and callable(value) and not (value.__doc__ or "").strip()]
        assert bare == [], client.__name__
