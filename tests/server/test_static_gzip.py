"""The static text assets (web chat, console, Swagger UI) go out gzipped to clients that accept it, with caching
headers that revalidate them; API answers and SSE streams never do (a real uvicorn)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.server.conftest import Server

SERVER = Path(__file__).parents[2] / "server" / "halguru_server"
GZIP = {"Accept-Encoding": "gzip"}


def _raw(http: httpx.Client, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The answer and its body as sent (httpx would undo the gzip)."""
    with http.stream("GET", path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


def test_static_text_assets_are_gzipped_and_revalidated(serve: Callable[..., Server]) -> None:
    """The chat's scripts (chat.js and the modules it imports), the console's CSS and Swagger UI's 1.5 MB bundle
    went out as they are on disk, and the chat's files had no Cache-Control: a browser could keep last release's
    chat.js by its own guess."""
    server = serve()
    with httpx.Client(base_url=server.url) as http:
        scripts = [(f"/chat/static/{p.name}", p) for p in sorted((SERVER / "static").glob("chat*.js"))]
        for path, file in (*scripts, ("/admin/assets/console.css", SERVER / "console" / "static" / "console.css"),
                           ("/chat/widget.js", SERVER / "static" / "widget.js")):
            response, body = _raw(http, path, GZIP)
            assert response.status_code == 200, path
            assert response.headers["content-encoding"] == "gzip", path
            assert "accept-encoding" in response.headers["vary"].lower()
            assert gzip.decompress(body) == file.read_bytes() and len(body) < file.stat().st_size / 2, path
        response, body = _raw(http, "/swagger-assets/swagger-ui-bundle.js", GZIP)
        assert response.headers["content-encoding"] == "gzip" and len(gzip.decompress(body)) > 3 * len(body)

        chat, _ = _raw(http, "/chat/static/chat.js", GZIP)
        assert chat.headers["cache-control"] == "no-cache" and chat.headers["etag"].startswith('W/"')
        assert http.get("/chat/static/chat.js", headers={**GZIP, "If-None-Match": chat.headers["etag"]}
                        ).status_code == 304  # unchanged: nothing sent again
        plain, body = _raw(http, "/chat/static/chat.js", {"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and body == (SERVER / "static" / "chat.js").read_bytes()
        assert not plain.headers["etag"].startswith("W/")  # the file itself: its ETag stays strong


def test_api_answers_and_streams_are_not_compressed(serve: Callable[..., Server],
                                                   api_key: Callable[..., str]) -> None:
    """Compressing an SSE stream holds its events in the compressor; JSON answers stay as written too (pages and
    answers that hold secrets beside text a client chose are not to be compressed: BREACH)."""
    server = serve()
    headers = {**GZIP, "Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        conversation = http.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        with http.stream("POST", f"/v1/conversations/{conversation}/messages",
                         json={"content": "x" * 2000, "stream": True}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers
            assert b"run_finished" in b"".join(stream.iter_raw())
        messages, body = _raw(http, f"/v1/conversations/{conversation}/messages", headers)
        assert len(body) > 2000 and "content-encoding" not in messages.headers
        page, _ = _raw(http, "/chat/", headers)
        assert "content-encoding" not in page.headers


def test_a_files_compressed_bytes_are_kept_not_compressed_again(serve: Callable[..., Server],
                                                                 monkeypatch) -> None:
    """These paths are public: Swagger UI's 1.5 MB bundle compressed again for each GET, so 50 anonymous clients
    asking for it at once took another user's GET /v1/agents from 2 ms to a p50 of 390 ms (a real `halguru
    serve`). A file is compressed once now; later answers are the same bytes, and a client that does not accept
    gzip still gets the file as it is."""
    from halguru_server import middleware

    compressed: list[int] = []
    real = gzip.compress

    class Counting:
        @staticmethod
        def compress(data: bytes, *args, **kwargs) -> bytes:
            compressed.append(len(data))
            return real(data, *args, **kwargs)

    monkeypatch.setattr(middleware, "gzip", Counting)
    server = serve()
    with httpx.Client(base_url=server.url) as http:
        answers = [_raw(http, "/swagger-assets/swagger-ui-bundle.js", GZIP) for _ in range(4)]
        plain, body = _raw(http, "/swagger-assets/swagger-ui-bundle.js", {"Accept-Encoding": "identity"})
    assert len(compressed) == 1 and compressed[0] > 1_000_000
    assert all(a.headers["content-encoding"] == "gzip" and b == answers[0][1] for a, b in answers)
    assert int(answers[0][0].headers["content-length"]) == len(answers[0][1])
    assert gzip.decompress(answers[0][1]) == body and "content-encoding" not in plain.headers
