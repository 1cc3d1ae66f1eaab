"""What a request body may cost the server before anyone is known: an anonymous caller's body is not read on a
route that needs a caller, and no body is parsed into more JSON values than the server allows (a 1 MB
``[{},{},...]`` is ~330,000 objects: ~14 MB of memory each, and 50 at once took the server past 1 GB)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

MANY = b"[" + b",".join([b"{}"] * 330_000) + b"]"  # just under the default 1 MB limit
JSON = {"content-type": "application/json"}


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"]["message"], body
    return body["error"]


@pytest.mark.parametrize("path", ["/v1/conversations", "/v1/chat/completions", "/v1/keys"])
def test_an_anonymous_caller_gets_401_before_its_body_is_read(serve, least_rise, path: str) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        response, peak = least_rise(lambda: client.post(path, content=MANY, headers=JSON))
    assert response.status_code == 401
    assert "API key" in _error(response)["message"]
    assert peak < 4_000_000, f"refusing an anonymous 1 MB body took {peak / 1e6:.1f} MB"


def test_a_bad_key_gets_401_before_its_body_is_read(serve, least_rise) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        response, peak = least_rise(lambda: client.post("/v1/conversations", content=MANY,
                               headers={**JSON, "Authorization": "Bearer hg_not_a_key"}))
    assert response.status_code == 401 and "invalid key" in _error(response)["message"]
    assert peak < 4_000_000, f"refusing a bad key's 1 MB body took {peak / 1e6:.1f} MB"


def test_a_body_of_too_many_json_values_is_413_before_it_is_parsed(serve, api_key, least_rise) -> None:
    server = serve()
    headers = {**JSON, "Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        for path, extra in (("/v1/conversations", headers), ("/chat/api/conversations", JSON)):  # a key; anyone
            response, peak = least_rise(lambda path=path, extra=extra: client.post(path, content=MANY, headers=extra))
            assert response.status_code == 413, response.text
            assert "50000 (HALGURU_SERVE_MAX_JSON_ITEMS)" in _error(response)["message"]
            assert peak < 4_000_000, f"{path}: refusing 1 MB of JSON values took {peak / 1e6:.1f} MB"
        deep = b"[" * 5000 + b"]" * 5000  # few items, but nested past what the parser takes
        response = client.post("/v1/conversations", content=deep, headers=headers)
        assert response.status_code == 400 and "nested too deeply" in _error(response)["message"]


def test_the_largest_chats_and_messages_a_server_takes_still_pass(serve, api_key) -> None:
    server = serve()
    headers = {"Authorization": f"Bearer {api_key()}"}
    text = "Well, f(x) returns [1, 2], or {} when x is None; see the docs, then try again. " * 200
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": text[:1000]} for i in range(199)]
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        answer = client.post("/v1/chat/completions", content=json.dumps(
            {"model": "echo", "messages": messages}), headers=JSON)
        assert answer.status_code == 200, answer.text
        conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        sent = client.post(f"/v1/conversations/{conversation}/messages", json={"content": text[:15_000]})
        assert sent.status_code == 200, sent.text


def test_a_sign_in_form_posted_with_files_is_400_before_they_are_read(serve, least_rise) -> None:
    """No page of ours uploads a file: a form of 999 file parts (each a spooled file object, ~2.8 MB a request,
    +56 MiB RSS for 20 at once) is refused at its first file part."""
    server = serve()
    parts = "".join(f'--b0\r\nContent-Disposition: form-data; name="f{i}"; filename="{"x" * 800}"\r\n\r\nA\r\n'
                    for i in range(999))
    form = f"{parts}--b0--\r\n".encode()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        response, peak = least_rise(lambda: client.post("/auth/login", content=form,
                               headers={"content-type": "multipart/form-data; boundary=b0", "origin": server.url}))
    assert response.status_code == 400 and "files" in _error(response)["message"], response.text
    assert peak < 1_500_000, f"refusing a form of 999 files took {peak / 1e6:.1f} MB"


def test_a_webhook_form_of_too_many_fields_is_refused_before_it_is_split(serve, least_rise) -> None:
    """A provider's webhook form has tens of fields; 120,000 were split on the event loop (~0.5 s and ~15 MB each:
    50 at once held every other request for 28 s) before the signature check refused them."""
    server = serve()
    form = "&".join(f"k{i}=" for i in range(120_000)).encode()[:999_000]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        response, peak = least_rise(lambda: client.post("/channels/twilio/echo", content=form,
                               headers={"content-type": "application/x-www-form-urlencoded"}))
    assert response.status_code == 403 and "no valid signature" in _error(response)["message"]
    assert peak < 4_000_000, f"refusing a form of 120,000 fields took {peak / 1e6:.1f} MB"


def test_values_escaped_in_a_string_parsed_again_count_against_the_budget(serve, api_key, least_rise) -> None:
    """A tool call's ``arguments`` is JSON in a string, parsed again: written with escaped brackets and commas
    (``\\u007b\\u007d\\u002c``) its 55,000 objects were counted as 3 items, so the body passed to both parses."""
    server = serve()
    many = "\\u007b\\u007d\\u002c" * 55_000  # 990 KB of {}, as escapes: under the 1 MB body limit
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "X"}}
    body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": "", "tool_calls": [call]}]})
    body = body.replace('"X"', '"{\\"a\\": [' + many + '{}]}"')
    assert len(json.loads(json.loads(body)["messages"][1]["tool_calls"][0]["function"]["arguments"])["a"]) == 55_001
    headers = {**JSON, "Authorization": f"Bearer {api_key()}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/healthz")
        response, peak = least_rise(lambda: client.post("/v1/chat/completions", content=body, headers=headers))
        assert response.status_code == 413, response.text
        error = response.json()["error"]  # the OpenAI endpoint's error shape
        assert error["code"] == "too_large" and "110018 JSON items" in error["message"], error  # weighed, unparsed
        assert peak < 4_000_000, f"refusing 1 MB of escaped JSON values took {peak / 1e6:.1f} MB"
        shouted = body.replace("\\u007b", "\\u007B").replace("\\u002c", "\\u002C")
        upper = client.post("/v1/chat/completions", content=shouted, headers=headers)
        assert upper.json()["error"]["code"] == "too_large"  # either case of the escape
