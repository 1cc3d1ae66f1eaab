"""`halguru serve` against clients that connect and never finish a request (slowloris): a real process on
loopback, raw sockets as the attacker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.server.conftest import free_port

HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends the head never comes


@pytest.fixture
def server(halguru_cmd, subprocess_env, agents_dir, tmp_path) -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen] = []
    logs = (tmp_path / "serve.log").open("w")  # a file, not a pipe nobody reads: a full pipe would stall it

    def start(env: dict[str, str], open_files: int | None = None) -> int:
        port = free_port()

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        proc = subprocess.Popen([*halguru_cmd, "serve", str(agents_dir), "--dev", "--port", str(port)],
                                env={**subprocess_env, **env}, preexec_fn=limit, text=True,
                                stdout=subprocess.DEVNULL, stderr=logs)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return port
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(15)
    logs.close()


def connect(port: int, first: bytes = HALF_HEAD) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if first:
        sock.sendall(first)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_a_half_sent_request_gets_408_and_a_silent_connection_is_closed(server) -> None:
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "1"})
    half, silent = connect(port), connect(port, b"")
    started = time.monotonic()
    answer = read_all(half)
    assert answer.startswith(b"HTTP/1.1 408 ")
    head, body = answer.split(b"\r\n\r\n", 1)  # the one error shape, as JSON
    assert b"content-type: application/json" in head and json.loads(body)["error"]["type"] == "timeout"
    assert read_all(silent) == b""  # it never asked anything: just closed
    assert 0.8 < time.monotonic() - started < 4


def test_a_head_over_64_kib_gets_431_however_it_arrives(server) -> None:
    port = server({})
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(8000)) + b"\r\n"
    for head in (big, many):
        answer = read_all(connect(port, head))  # sent whole: one read holds it, past h11's incomplete-head limit
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "too_large"
    trickled = connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):
        trickled.sendall(b"X-Pad: " + b"b" * 4000 + b"\r\n")
    assert read_all(trickled).startswith(b"HTTP/1.1 431 ")
    fine = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Fine": "c" * 40_000})
    assert fine.status_code == 200
    body = json.dumps({"agent": "echo", "title": "t" * 300_000}).encode()  # a big body right after its head
    posted = httpx.post(f"http://127.0.0.1:{port}/v1/conversations", content=body,
                        headers={"Content-Type": "application/json"})
    assert posted.status_code != 431, posted.text


def test_a_head_of_more_than_100_fields_gets_431_before_it_is_parsed(server) -> None:
    """Each header field costs h11 and every lookup after it: 6,000 four-byte fields (30 KB, under the 64 KiB
    cap) took 60-90 ms of the event loop for a /healthz that takes 1.5 ms, so a few such requests a second from
    anyone held up every client. Past 100 fields (Apache's LimitRequestFields) the head is refused unparsed."""
    port = server({})
    fields = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"a:b\r\n" * n + b"Connection: close\r\n\r\n"
              for n in (98, 6000)]
    assert read_all(connect(port, fields[0])).startswith(b"HTTP/1.1 200 ")  # 100 fields with Host and Connection
    answer = read_all(connect(port, fields[1]))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert "more than 100 header fields" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    trickled = connect(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):
        trickled.sendall(b"a:b\r\n" * 10)
    assert read_all(trickled).startswith(b"HTTP/1.1 431 ")
    lf_only = (b"POST /v1/conversations HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 400\nContent-Type: text/plain\n"
               b"Connection: close\n\n")
    answer = read_all(connect(port, lf_only + b"\n" * 400))  # a body's lines are not header fields
    assert answer.startswith(b"HTTP/1.1 415 "), answer[:80]  # read, and refused for its type


def test_trickled_headers_do_not_buy_time(server) -> None:
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "1"})
    sock = connect(port, b"GET /healthz HTTP/1.1\r\n")
    started, answer = time.monotonic(), b""
    for i in range(40):  # one header line every 0.1 s: 4 s of headers, each arriving well within 1 s
        try:
            sock.sendall(b"X-Pad-%d: y\r\n" % i)
        except OSError:
            break
        time.sleep(0.1)
    sock.settimeout(5)
    try:
        answer = read_all(sock)
    except ConnectionResetError:  # closed while lines were still coming: a reset instead of the 408
        answer = b"reset"
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"reset"
    assert time.monotonic() - started < 3, "the trickle kept the connection open"


def test_a_body_that_never_comes_is_cut_and_a_real_one_is_served(server) -> None:
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "1"})
    sock = connect(port, b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
    started = time.monotonic()
    assert read_all(sock) == b""  # 1 s + 500 bytes at 16 KiB/s: closed, no answer (the app saw a disconnect)
    assert 0.8 < time.monotonic() - started < 4
    created = httpx.post(f"http://127.0.0.1:{port}/v1/conversations", json={"agent": "echo"})
    assert created.status_code == 201


def test_a_connection_answered_before_its_body_came_gets_header_timeout_for_the_rest(server) -> None:
    """A 413 for an announced 100 GB body: the rest of that body gets header_timeout, not a deadline of 100 GB
    at 16 KiB/s; a client that sends its body's rest at once keeps the connection, and its next head is held
    to the 64 KiB cap again (even when it arrives in one read with the end of that body)."""
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "1"})
    sock = connect(port, b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 99999999999\r\n\r\n")
    started, answer = time.monotonic(), b""
    for _ in range(8):  # a header-like drip, as a slow client would send
        try:
            sock.sendall(b"X-n: a\r\n")
            time.sleep(0.5)
        except OSError:
            break
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        answer = read_all(sock)
    assert time.monotonic() - started < 8, "the connection outlived its 413"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # over the body limit, then a big head
        too_big = client.post("/v1/conversations", content=b"x" * 1_100_000,
                              headers={"Content-Type": "application/json"})
        assert too_big.status_code == 413
        assert client.get("/healthz").status_code == 200  # the same client goes on
        after = client.get("/healthz", headers={"X-Big": "b" * 70_000})
        assert after.status_code == 431, after.text


def test_keep_alive_clients_are_served_as_before(server) -> None:
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "1"})
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(4):  # one connection: each request's head comes at once, the pauses are between them
            assert client.get("/healthz").status_code == 200
            time.sleep(0.3)
        assert client.post("/v1/conversations", json={"agent": "echo"}).status_code == 201


def still_open(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open (what it answered on it is read and dropped)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("first", [HALF_HEAD, b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                             b"Content-Length: 100\r\n\r\n{",
                                   b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"], ids=["head", "body", "idle"])
def test_a_flood_of_half_sent_requests_does_not_lock_others_out(server, first: bytes) -> None:
    """256 open files: without a cap, 400 half-sent requests (heads, or bodies) take them all and nobody else
    gets in (the deadline alone would free them only after it passes). Idle keep-alive connections (answered,
    then silent: the keep-alive timeout alone would free them only after 75 s) count the same."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:  # the attacker's sockets are this process's files
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "60"}, open_files=256)
    flood = []
    for _ in range(400):
        try:
            flood.append(connect(port, first))
        except OSError:  # the kernel's queue full for a moment: the flood goes on
            time.sleep(0.01)
    try:
        started = time.monotonic()
        for _ in range(5):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 5
        held = [still_open(sock) for sock in flood]
        assert 0 < sum(held) <= 128  # half of 256 files may wait for a head, a body or the next request
        assert not any(held[:64])  # the oldest were closed first
    finally:
        for sock in flood:
            sock.close()


def test_refused_accepts_are_one_warning_not_a_traceback_each(caplog) -> None:
    from halguru_server.connections import ACCEPT_FAILED, quiet_accept_failures

    loop = asyncio.new_event_loop()
    others: list[str] = []
    loop.set_exception_handler(lambda _loop, context: others.append(context["message"]))
    try:
        quiet_accept_failures(loop)
        for _ in range(500):
            loop.call_exception_handler({"message": ACCEPT_FAILED, "exception": OSError(24, "Too many open files")})
        loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    warned = [r for r in caplog.records if "out of open files" in r.getMessage()]
    assert len(warned) == 1 and others == ["something else"]  # the rest still reach the previous handler


def test_a_request_framed_by_length_and_chunks_is_refused_and_the_connection_closed(server) -> None:
    """Content-Length and Transfer-Encoding together (request smuggling's shape: a proxy that goes by the
    length would read the rest as another request): 400 and closed, so the request piggybacked on it never
    runs; h11 alone read the chunks, answered 200 and then served the smuggled request on the same connection."""
    port = server({})
    body = b'{"agent": "echo"}'
    sock = connect(port, b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                         + b"DELETE /v1/conversations/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # what a plain client sends still works
        assert client.post("/v1/conversations", json={"agent": "echo"}).status_code == 201
        assert client.post("/v1/conversations", content=(body for _ in range(1)),  # chunked alone
                           headers={"Content-Type": "application/json"}).status_code == 201


@pytest.mark.parametrize("twice", [b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
                                   b"X-API-Key: a\r\nX-API-Key: b\r\n", b"api-key: a\r\napi-key: b\r\n",
                                   b"Host: evil.example\r\n"])
def test_a_request_with_two_keys_or_hosts_is_refused(server, twice: bytes) -> None:
    """A proxy in front may check the last of two Authorization headers while halguru took the first: such a
    request is a 400 and its connection closed, never served with either."""
    port = server({})
    sock = connect(port, b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n" + twice + b"\r\n")
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/v1/agents", headers={"Authorization": "Bearer a"}).status_code in (200, 401)


def request_on(sock: socket.socket) -> bytes:
    """One GET /healthz on a kept-alive socket: the whole response (b"" when the server had closed it)."""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(4096)):
            data += chunk
        if not data:
            return b""
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")))
        while len(body) < length and (chunk := sock.recv(4096)):
            body += chunk
        return data
    except ConnectionResetError:
        return b""


def test_an_idle_connection_outlasts_the_head_deadline_and_clients_pool_expiry(server) -> None:
    """Between requests a connection is idle, not late: it is kept for keep_alive_timeout, told to clients, so
    a pooled client (httpx drops its idle connections after 5 s) never reuses one the server is closing (that
    request was reset: 14 in 1,600 sent 4.9-5.1 s after the last, when uvicorn closed idle ones after 5 s)."""
    port = server({"HALGURU_SERVE_HEADER_TIMEOUT": "0.5"})
    sock = connect(port, b"")
    first = request_on(sock)
    assert b" 200 " in first.split(b"\r\n", 1)[0] and b"keep-alive: timeout=75" in first.lower()
    time.sleep(1.5)  # past the head's deadline: it starts with the next request's first byte
    assert b" 200 " in request_on(sock).split(b"\r\n", 1)[0]
    time.sleep(1.5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(1)  # that head is still held to its deadline
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_keep_alive_timeout_closes_an_idle_connection(server) -> None:
    port = server({"HALGURU_SERVE_KEEP_ALIVE_TIMEOUT": "1", "HALGURU_SERVE_HEADER_TIMEOUT": "5"})
    sock = connect(port, b"")
    assert b"keep-alive: timeout=1\r\n" in request_on(sock).lower()
    time.sleep(0.5)
    assert b" 200 " in request_on(sock).split(b"\r\n", 1)[0]  # still kept: idle less than the timeout
    started = time.monotonic()
    assert read_all(sock) == b""
    assert 0.8 < time.monotonic() - started < 3


def test_an_answer_its_client_never_reads_is_dropped_after_send_timeout(server) -> None:
    """Measured: 20 clients that asked for a 30 MB history and read none of it took the server from 214 to 1,310 MB
    of RSS, held as long as they kept their sockets. Now an answer whose writing makes no progress for
    ``send_timeout`` seconds has its connection aborted (the client gets less than the whole answer), and the server
    answers others as before."""
    from halguru.models.base import Message
    from halguru.store import open_store

    text = "x" * 50_000
    history = [Message(role="user" if i % 2 == 0 else "assistant", content=text) for i in range(200)]  # 10 MB
    open_store().create_conversation("conv_big", "echo", "", history, owner=None)
    port = server({"HALGURU_SERVE_SEND_TIMEOUT": "2"})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing: the kernel's part small
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/conversations/conv_big/messages?limit=200 HTTP/1.1\r\n"  # all 200: 10 MB
                 f"Host: 127.0.0.1:{port}\r\n\r\n".encode())
    time.sleep(5)  # past send_timeout, reading nothing
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    sock.settimeout(10)
    received = b""
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(1 << 20):
            received += chunk
    sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    assert length > 10_000_000 and len(body) < length  # cut: the server let go of the rest
