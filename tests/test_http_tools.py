"""HTTP tools declared in agent.yaml (request templates and OpenAPI operations), against a real loopback server."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from halguru import load_agent, run_sync
from halguru.errors import AgentSpecError, ToolError
from halguru.store import open_store
from halguru.tools.registry import execute_tool


class Server:
    """A loopback HTTP server that records every request and answers by path."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorded = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                body = json.loads(raw) if raw and "json" in self.headers.get("Content-Type", "") else raw
                recorded.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": body})
                route = urlsplit(self.path).path
                if route == "/slow":
                    time.sleep(2)  # far past the tool's 0.3 s timeout: a client that waits is told apart
                if route == "/missing":
                    self._send(404, b"no such\n   thing", "text/plain")
                elif route == "/empty":
                    self._send(204, b"", "text/plain")
                elif route in ("/headers", "/denied"):  # an API that echoes the request's headers back
                    echoed = json.dumps(dict(self.headers)).encode()
                    self._send(200 if route == "/headers" else 403, echoed, "application/json")
                elif route == "/endless":  # a body that never ends (HTTP/1.0: until the connection closes)
                    self._endless()
                elif route == "/trickle":  # a byte every 0.1 s: each read is quick, the whole is not
                    self._endless(pause=0.1, chunk=b"x")
                elif route == "/big":
                    self._send(200, b"x" * 20000, "text/plain")
                elif route == "/packed":  # an API that compresses its answers, as many do
                    self._send(200, gzip.compress(b'{"ok":  true}'), "application/json", "gzip")
                elif route == "/bomb":  # 200 MB of x, gzipped twice over: a few KB on the wire
                    self._send(200, gzip_bomb(200), "text/plain", "gzip, gzip")
                elif route == "/brotli":
                    self._send(200, b"\x1b\x00\x00", "text/plain", "br")
                else:
                    echo = {"method": self.command, "path": self.path, "body": body}
                    self._send(200, json.dumps(echo, indent=4).encode(), "application/json")

            def _endless(self, pause: float = 0, chunk: bytes = b"x" * 65536) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, status: int, body: bytes, content_type: str, encoding: str = "") -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    if encoding:
                        self.send_header("Content-Encoding", encoding)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # /slow: the client gave up first, as the test wants

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"


def gzip_bomb(megabytes: int) -> bytes:
    """``megabytes`` MB of x, gzipped, and gzipped again (it shrinks to a few KB)."""
    pack = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"x" * (1 << 20)
    return gzip.compress(b"".join(pack.compress(block) for _ in range(megabytes)) + pack.flush(), 9)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def call(tool: Any, **arguments: Any) -> str:
    return asyncio.run(execute_tool(tool, arguments))


SHOP = """\
name: shop
model: scripted
tools: [calculator]
http_tools:
  - name: get_item
    description: Look up an item by id.
    url: {url}/items/{{item_id}}?format=json
    parameters:
      type: object
      properties:
        item_id: {{type: integer}}
        q: {{type: string}}
        verbose: {{type: boolean}}
  - name: add_item
    method: POST
    url: {url}/lists/{{list}}/items
    parameters:
      type: object
      properties:
        name: {{type: string}}
        qty: {{type: integer, minimum: 1}}
      required: [name]
  - name: by_name
    url: {url}/items/{{item}}?format=json
  - name: missing
    url: {url}/missing
  - name: slow
    url: {url}/slow
    timeout: 0.3
  - name: big
    url: {url}/big
  - name: empty
    method: DELETE
    url: {url}/empty
  - name: endless
    url: {url}/endless
  - name: trickle
    url: {url}/trickle
    timeout: 0.5
"""


@pytest.fixture
def shop(server: Server, write_agent: Any) -> Any:
    return load_agent(write_agent(SHOP.format(url=server.url)))


def test_get_fills_the_path_and_sends_the_other_arguments_as_query(shop, server):
    tool = shop.tools["get_item"]
    assert tool.description == "Look up an item by id."
    assert tool.parameters["required"] == ["item_id"]  # a URL placeholder is always required
    result = call(tool, item_id=42, q="red shoes", verbose=True)
    [seen] = server.requests
    assert seen["method"] == "GET" and seen["path"] == "/items/42?format=json&q=red+shoes&verbose=true"
    assert json.loads(result)["path"] == seen["path"]
    assert "\n" not in result  # JSON comes back on one line, not as the server indented it


def test_post_sends_the_other_arguments_as_a_json_body(shop, server):
    tool = shop.tools["add_item"]
    assert tool.parameters["properties"]["list"] == {"type": "string"}  # declared by the URL alone
    call(tool, list="week 1", name="milk", qty=2)
    [seen] = server.requests
    assert seen["method"] == "POST" and seen["path"] == "/lists/week%201/items"
    assert seen["body"] == {"name": "milk", "qty": 2}
    assert seen["headers"]["Content-Type"] == "application/json"


def test_arguments_are_validated_by_the_schema_before_any_request(shop, server):
    with pytest.raises(ToolError, match="invalid arguments for add_item: qty: 0 is less than the minimum of 1"):
        call(shop.tools["add_item"], list="a", name="milk", qty=0)
    assert server.requests == []


@pytest.mark.parametrize("value, path", [
    ("../admin?x=1#top", "/items/..%2Fadmin%3Fx%3D1%23top?format=json"),
    ("a/b c", "/items/a%2Fb%20c?format=json"),
    ("@evil.example", "/items/%40evil.example?format=json"),
])
def test_a_path_argument_stays_inside_its_segment(shop, server, value, path):
    call(shop.tools["by_name"], item=value)
    assert [r["path"] for r in server.requests] == [path]


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_dot_and_empty_path_segments_are_refused(shop, server, value):
    with pytest.raises(ToolError, match="it is one segment of the URL path"):
        call(shop.tools["by_name"], item=value)
    assert server.requests == []


def test_http_error_names_the_status_the_request_and_the_body(shop, server):
    with pytest.raises(ToolError) as caught:
        call(shop.tools["missing"])
    assert str(caught.value) == f"HTTP 404 from GET {server.url}/missing: no such thing"


def test_timeout_is_a_one_line_error(shop, server):
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        call(shop.tools["slow"])
    assert str(caught.value) == f"GET {server.url}/slow timed out after 0.3s"
    assert time.monotonic() - started < 1.5  # a slow machine's event loop and client set-up take some of it


def test_unreachable_service_is_a_one_line_error(write_agent):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = load_agent(write_agent(f"name: a\nmodel: scripted\nhttp_tools:\n  - name: down\n"
                                   f"    url: http://127.0.0.1:{port}/x\n"))
    with pytest.raises(ToolError) as caught:
        call(agent.tools["down"])
    message = str(caught.value)
    assert message.startswith(f"GET http://127.0.0.1:{port}/x failed: ConnectError") and "\n" not in message


def test_long_and_empty_responses(shop):
    big = call(shop.tools["big"])
    assert big.startswith("x" * 8000) and big.endswith("\n… (cut: 12000 characters)")
    assert call(shop.tools["empty"]) == "HTTP 204 (no content)"


def test_an_endless_body_is_read_only_up_to_a_limit(shop):
    """The whole body was read into memory: 2.7 GB in 15 s from an endless one, for 8000 characters."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = call(shop.tools["endless"])
    assert result.startswith("x" * 8000) and result.endswith("\n… (cut: 992000 characters)")
    assert time.monotonic() - started < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB


def test_timeout_bounds_the_whole_request(shop):
    """A body trickling in a byte at a time kept the request going past its timeout (httpx's is per read)."""
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"^GET http://127\.0\.0\.1:\d+/trickle timed out after 0\.5s$"):
        call(shop.tools["trickle"])
    assert time.monotonic() - started < 2


def test_http_get_reads_an_endless_body_only_up_to_a_limit(server, monkeypatch):
    from halguru.config import reset_settings
    from halguru.tools.builtin import http_get

    monkeypatch.setenv("HALGURU_HTTP_ALLOW_PRIVATE", "1")
    reset_settings()
    started = time.monotonic()
    assert call(http_get, url=server.url + "/endless", max_chars=10) == "HTTP 200\n" + "x" * 10
    assert time.monotonic() - started < 5


PACKED = """\
name: packed
model: scripted
http_tools:
  - {{name: packed, url: "{url}/packed"}}
  - {{name: bomb, url: "{url}/bomb"}}
  - {{name: brotli, url: "{url}/brotli"}}
"""


def test_a_compressed_body_is_decoded_only_up_to_the_read_limit(server, write_agent, monkeypatch):
    """httpx decoded each compressed chunk at once: 1.8 KB sent as 'gzip, gzip' became 1 GB in memory (2.1 GB
    peak, 23 s) before the 1 MB read limit was looked at, from an HTTP tool's API or any page http_get reads."""
    from halguru.config import reset_settings
    from halguru.tools.builtin import http_get

    packed = load_agent(write_agent(PACKED.format(url=server.url))).tools
    assert call(packed["packed"]) == '{"ok": true}'  # decoded, then read as JSON
    assert server.requests[-1]["headers"]["Accept-Encoding"] == "gzip, deflate"  # what halguru decodes
    monkeypatch.setenv("HALGURU_HTTP_ALLOW_PRIVATE", "1")
    reset_settings()
    tracemalloc.start()
    try:
        result = call(packed["bomb"])
        page = call(http_get, url=server.url + "/bomb", max_chars=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.startswith("x" * 8000) and result.endswith("\n… (cut: 992000 characters)")
    assert page == "HTTP 200\n" + "x" * 10
    assert peak < 20_000_000  # bytes: the 1 MB read and its copies, not the 200 MB it decodes to
    with pytest.raises(ToolError, match=r"^GET http://127\.0\.0\.1:\d+/brotli: the body is compressed as 'br', "
                                        r"which halguru does not decode \(it asked for gzip, deflate\)$"):
        call(packed["brotli"])


AUTH = """\
name: secure
model: scripted
http_tools:
  - name: whoami
    url: {url}/me
    auth: {{secret: SHOP_TOKEN}}
  - name: keyed
    url: {url}/keyed
    headers: {{Accept: application/json}}
    auth: {{secret: SHOP_KEY, header: X-Api-Key, scheme: ""}}
"""


def test_auth_header_comes_from_the_secret_and_never_reaches_the_trace(server, write_agent, monkeypatch):
    from halguru.models.scripted import ScriptedModel

    monkeypatch.setenv("SHOP_TOKEN", "tok-s3cret")
    monkeypatch.setenv("SHOP_KEY", "key-s3cret")
    folder = write_agent(AUTH.format(url=server.url))
    model = ScriptedModel([{"tool_calls": [{"name": "whoami", "arguments": {}},
                                           {"name": "keyed", "arguments": {}}]}, "Done."])
    result = run_sync(folder, "who am I?", model=model)
    assert result.ok, result.error
    headers = {r["path"]: r["headers"] for r in server.requests}
    assert headers["/me"]["Authorization"] == "Bearer tok-s3cret"
    assert headers["/keyed"]["X-Api-Key"] == "key-s3cret" and headers["/keyed"]["Accept"] == "application/json"
    stored = json.dumps(open_store().get_events(result.run_id))
    assert "/keyed" in stored and "s3cret" not in stored


def test_a_secret_an_api_echoes_back_is_hidden_in_results_and_errors(server, write_agent, monkeypatch):
    from halguru.models.scripted import ScriptedModel

    monkeypatch.setenv("SHOP_TOKEN", "tok-s3cret")
    folder = write_agent(AUTH.format(url=server.url).replace("/me", "/headers").replace(
        "url: " + server.url + "/keyed", "url: " + server.url + "/denied"))
    monkeypatch.setenv("SHOP_KEY", "key-s3cret")
    model = ScriptedModel([{"tool_calls": [{"name": "whoami", "arguments": {}},
                                           {"name": "keyed", "arguments": {}}]}, "Done."])
    result = run_sync(folder, "who am I?", model=model)
    results = [e for e in result.events if e.type == "tool_result"]
    assert "Bearer ***" in results[0].content and results[1].is_error and "HTTP 403" in results[1].content
    assert "s3cret" not in json.dumps(open_store().get_events(result.run_id))


def test_missing_secret_is_an_error_result_naming_it(server, write_agent, monkeypatch):
    from halguru.models.scripted import ScriptedModel

    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    folder = write_agent(AUTH.format(url=server.url))
    model = ScriptedModel([{"tool_calls": [{"name": "whoami", "arguments": {}}]}, "No token."])
    result = run_sync(folder, "who am I?", model=model)
    assert result.ok and result.output == "No token."
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result.is_error
    assert "the secret SHOP_TOKEN is not set" in tool_result.content
    assert "keyring set halguru SHOP_TOKEN" in tool_result.content
    assert server.requests == []


HEADER_SECRETS = """\
name: secure
model: scripted
http_tools:
  - name: echo
    url: {url}/headers
    headers: {{X-Api-Key: "${{SHOP_HEADER_KEY}}", X-Client: "app ${{SHOP_CLIENT}} v1", Accept: application/json}}
  - name: denied
    url: {url}/denied
    headers: {{X-Api-Key: "${{SHOP_HEADER_KEY}}"}}
"""


def test_header_secrets_are_expanded_and_never_shown(server, write_agent, monkeypatch, cli):
    from halguru.models.scripted import ScriptedModel

    monkeypatch.setenv("SHOP_HEADER_KEY", "hdr-s3cret")
    monkeypatch.setenv("SHOP_CLIENT", "cli-s3cret")
    folder = write_agent(HEADER_SECRETS.format(url=server.url))
    assert "s3cret" not in cli("validate", str(folder)).output
    model = ScriptedModel([{"tool_calls": [{"name": "echo", "arguments": {}},
                                           {"name": "denied", "arguments": {}}]}, "Done."])
    result = run_sync(folder, "go", model=model)
    assert result.ok, result.error
    sent = server.requests[0]["headers"]
    assert sent["X-Api-Key"] == "hdr-s3cret" and sent["X-Client"] == "app cli-s3cret v1"
    assert server.requests[1]["headers"]["X-Api-Key"] == "hdr-s3cret"
    echoed, denied = [e for e in result.events if e.type == "tool_result"]
    assert '"X-Api-Key": "***"' in echoed.content and '"X-Client": "app *** v1"' in echoed.content
    assert denied.is_error and "HTTP 403" in denied.content and "***" in denied.content
    assert "s3cret" not in json.dumps(open_store().get_events(result.run_id))


def test_a_short_value_in_a_header_is_not_hidden_everywhere(server, write_agent, monkeypatch):
    """A header's ``${NAME}`` set to ``1`` hid every 1 of every result (``on``: the "on" of ``application/json``);
    values under 8 characters are no secret worth the name, and are left as they are."""
    from halguru.models.scripted import ScriptedModel

    monkeypatch.setenv("SHOP_HEADER_KEY", "hdr-s3cret")
    monkeypatch.setenv("SHOP_CLIENT", "on")
    folder = write_agent(HEADER_SECRETS.format(url=server.url))
    model = ScriptedModel([{"tool_calls": [{"name": "echo", "arguments": {}}]}, "Done."])
    result = run_sync(folder, "go", model=model)
    assert result.ok, result.error
    [echoed] = [e for e in result.events if e.type == "tool_result"]
    assert '"X-Api-Key": "***"' in echoed.content and '"X-Client": "app on v1"' in echoed.content
    assert echoed.content.count("***") == 1  # "application/json" kept its "on"


def test_header_secret_not_set_is_a_load_error_naming_it(server, write_agent, monkeypatch):
    monkeypatch.setenv("SHOP_HEADER_KEY", "hdr-s3cret")
    monkeypatch.delenv("SHOP_CLIENT", raising=False)
    folder = write_agent(HEADER_SECRETS.format(url=server.url))
    with pytest.raises(AgentSpecError) as caught:
        load_agent(folder)
    assert str(caught.value) == (f"{folder / 'agent.yaml'}:6: http_tools.0.headers: X-Client: the secret SHOP_CLIENT "
                                 "is not set; set the environment variable SHOP_CLIENT or store it with "
                                 "`keyring set halguru SHOP_CLIENT`")


OPENAPI = """\
openapi: 3.0.3
info: {title: Pets, version: "1"}
servers:
  - url: "URL/{prefix}"
    variables:
      prefix: {default: api}
paths:
  /pets:
    post:
      operationId: createPet
      summary: Add a pet.
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses: {"201": {description: created}}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: integer}, description: the pet's id}
    get:
      operationId: getPet
      description: One pet by id.
      parameters:
        - {$ref: "#/components/parameters/Fields"}
        - {name: X-Trace, in: header, schema: {type: string}}
      responses: {"200": {description: the pet}}
components:
  parameters:
    Fields: {name: fields, in: query, schema: {type: array, items: {type: string}}}
  schemas:
    Kind: {type: string, enum: [cat, dog]}
    NewPet:
      type: object
      required: [name]
      properties:
        name: {type: string}
        kind: {$ref: "#/components/schemas/Kind"}
"""

PETS = """\
name: pets
model: {model}
approvals: [createPet]
http_tools:
  - name: createPet
    openapi: openapi.yaml
    operation: createPet
  - name: get_pet
    openapi: openapi.yaml
    operation: getPet
"""


@pytest.fixture
def pets(server: Server, write_agent: Any, tmp_path: Path) -> Path:
    folder = write_agent(PETS.format(model="scripted"))
    (folder / "openapi.yaml").write_text(OPENAPI.replace("URL", server.url), encoding="utf-8")
    return folder


def test_openapi_operation_becomes_a_tool_with_the_documented_arguments(pets, server):
    agent = load_agent(pets)
    create, get = agent.tools["createPet"], agent.tools["get_pet"]
    assert create.description == "Add a pet."
    assert create.parameters == {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "properties": {"name": {"type": "string"}, "kind": {"type": "string", "enum": ["cat", "dog"]}}}
    assert get.description == "One pet by id."
    assert get.parameters["required"] == ["petId"]
    assert get.parameters["properties"]["petId"] == {"type": "integer", "description": "the pet's id"}
    assert get.parameters["properties"]["fields"] == {"type": "array", "items": {"type": "string"}}
    call(get, petId=7, fields=["name", "kind"], **{"X-Trace": "t1"})
    [seen] = server.requests
    assert seen["path"] == "/api/pets/7?fields=name&fields=kind" and seen["headers"]["X-Trace"] == "t1"


def test_openapi_call_end_to_end_through_an_agent_run(pets, server, tmp_path):
    script = tmp_path / "script.yaml"
    script.write_text('- tool_calls: [{name: get_pet, arguments: {petId: 3}}]\n'
                      '- tool_calls: [{name: createPet, arguments: {name: Tom, kind: cat}}]\n'
                      '- "Added Tom."\n', encoding="utf-8")
    (pets / "agent.yaml").write_text(PETS.format(model=f"scripted:{script}").replace("approvals: [createPet]\n", ""),
                                     encoding="utf-8")
    result = run_sync(pets, "add my cat Tom")
    assert result.ok and result.output == "Added Tom."
    assert [(r["method"], r["path"], r["body"]) for r in server.requests] == [
        ("GET", "/api/pets/3", ""), ("POST", "/api/pets", {"name": "Tom", "kind": "cat"})]
    results = [json.loads(e.content) for e in result.events if e.type == "tool_result"]
    assert results[1] == {"method": "POST", "path": "/api/pets", "body": {"name": "Tom", "kind": "cat"}}


def test_an_http_tool_can_wait_for_approval(pets, server):
    from halguru.models.scripted import ScriptedModel

    model = ScriptedModel([{"tool_calls": [{"name": "createPet", "arguments": {"name": "Rex"}}]}])
    result = run_sync(pets, "add Rex", model=model)
    assert result.status == "paused" and server.requests == []


def test_url_overrides_the_documents_server(pets, server):
    text = (pets / "openapi.yaml").read_text(encoding="utf-8").replace(server.url, "https://pets.example")
    (pets / "openapi.yaml").write_text(text, encoding="utf-8")
    (pets / "agent.yaml").write_text(PETS.format(model="scripted") + f"    url: {server.url}/v2\n",
                                     encoding="utf-8")
    call(load_agent(pets).tools["get_pet"], petId=1)
    assert [r["path"] for r in server.requests] == ["/v2/pets/1"]


def test_a_large_openapi_document_loads_in_moments(write_agent):
    """PyYAML's pure-Python parser read JSON documents too, and each tool listed the operations again: 100 tools
    of a 10,000-operation API (2.8 MB of JSON) took 63 s to load, at every `halguru run`; now 2 s."""
    paths = {f"/things{i}/{{id}}": {"get": {"operationId": f"getThing{i}", "summary": f"Thing {i}.", "parameters": [
        {"name": "id", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Id"}}]}}
        for i in range(5000)}
    document = {"openapi": "3.0.3", "servers": [{"url": "https://things.example.com"}], "paths": paths,
                "components": {"schemas": {"Id": {"type": "integer", "minimum": 1}}}}
    entries = "".join(f"  - {{name: thing{i}, openapi: things.json, operation: getThing{i * 97}}}\n" for i in range(50))
    folder = write_agent(f"name: things\nmodel: scripted\nhttp_tools:\n{entries}")
    (folder / "things.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    started = time.monotonic()
    tools = load_agent(folder).tools
    took = time.monotonic() - started
    assert tools["thing49"].description == "Thing 4753."
    assert tools["thing49"].parameters["properties"] == {"id": {"type": "integer", "minimum": 1}}
    assert took < 5, f"{took:.1f}s"  # 24 s before, on a busy 2-core machine


def test_unknown_operation_is_a_load_error_with_line_and_the_choices(pets, cli_error):
    (pets / "agent.yaml").write_text(PETS.format(model="scripted").replace("operation: getPet", "operation: getPets"),
                                     encoding="utf-8")
    with pytest.raises(AgentSpecError) as caught:
        load_agent(pets)
    assert str(caught.value) == (f"{pets / 'agent.yaml'}:10: http_tools.1.operation: no operation 'getPets' in "
                                 "openapi.yaml (available: createPet, getPet)")
    assert cli_error("validate", str(pets)) == f"Error: {caught.value}"


@pytest.mark.parametrize("change, expected", [
    (lambda y, d: (y.replace("openapi.yaml", "nope.yaml", 1), d), ":6: http_tools.0.openapi: "),
    (lambda y, d: (y, "openapi: 3.0.0\npaths: [\n"), ":6: http_tools.0.openapi: "),
    (lambda y, d: (y, d.replace("openapi: 3.0.3", "swagger: '2.0'")), "only OpenAPI 3 documents are supported"),
    (lambda y, d: (y, d.replace('"#/components/schemas/Kind"', '"#/components/schemas/Nope"')),
     ":7: http_tools.0.operation: createPet in openapi.yaml: $ref '#/components/schemas/Nope' points at nothing"),
    (lambda y, d: (y, d.replace("servers:", "unused:")), "it has no servers[0].url; give url: the API's absolute"),
    (lambda y, d: (y.replace("approvals: [createPet]", "tools: [calculator]\napprovals: [createPet]")
                   .replace("name: get_pet", "name: calculator"), d),
     ":9: http_tools.1.name: 'calculator' is already a tool from tools:; choose another name"),
    (lambda y, d: (y, d.replace('application/json:\n            schema: {$ref: "#/components/schemas/NewPet"}',
                                'application/json: oops')),
     ":7: http_tools.0.operation: createPet in openapi.yaml is not a valid OpenAPI operation (AttributeError: "),
    (lambda y, d: (y, d.replace("Kind: {type: string, enum: [cat, dog]}", "Kind: {$ref: '#/components/schemas/K0'}"
                                + "".join(f"\n    K{i}: {{properties: {{a: {{$ref: '#/components/schemas/K{i + 1}'}}, "
                                          f"b: {{$ref: '#/components/schemas/K{i + 1}'}}}}}}" for i in range(40))
                                + "\n    K40: {type: string}")),
     ":7: http_tools.0.operation: createPet in openapi.yaml: its schemas are too large once their $refs are inlined"),
    (lambda y, d: (y, d.replace("prefix: {default: api}", "prefix: api")),
     "/{prefix}'; give url: the API's absolute base URL"),
], ids=["missing-file", "bad-yaml", "swagger-2", "bad-ref", "no-server", "name-clash", "body-not-an-object",
        "exponential-refs", "variable-not-an-object"])
def test_bad_declarations_are_one_line_load_errors(pets, change, expected):
    yaml_text, doc = change(PETS.format(model="scripted"), (pets / "openapi.yaml").read_text(encoding="utf-8"))
    (pets / "agent.yaml").write_text(yaml_text, encoding="utf-8")
    (pets / "openapi.yaml").write_text(doc, encoding="utf-8")
    with pytest.raises(AgentSpecError) as caught:
        load_agent(pets)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(pets / "agent.yaml") + ":")


def test_a_schema_that_contains_itself_through_a_yaml_alias_is_cut_where_it_recurses(pets):
    """A YAML alias inside its own anchor made a structure that contains itself: loading it was a RecursionError."""
    doc = (pets / "openapi.yaml").read_text(encoding="utf-8").replace(
        "    NewPet:\n      type: object", "    NewPet: &pet\n      type: object").replace(
        "        name: {type: string}\n", "        name: {type: string}\n        parent: *pet\n")
    (pets / "openapi.yaml").write_text(doc, encoding="utf-8")
    properties = load_agent(pets).tools["createPet"].parameters["properties"]
    assert properties["parent"] == {} and properties["name"] == {"type": "string"}


@pytest.mark.parametrize("entry, expected", [
    ("{name: t}", "http_tools.0: give a url template, or openapi and operation"),
    ("{name: t, openapi: o.yaml}", "http_tools.0: give openapi and operation together"),
    ("{name: t, openapi: o.yaml, operation: x, method: POST}",
     "http_tools.0: with openapi, the document gives the method"),
    ("{name: t, url: 'http://{host}/x'}", "http_tools.0.url: placeholders may stand only in the path or the query"),
    ("{name: t, url: /relative}", "http_tools.0.url: '/relative' is not an absolute http(s) URL"),
    ("{name: t, url: 'http://h/x', parameters: {type: array}}", "http_tools.0.parameters: must be a JSON schema"),
])
def test_template_declaration_errors(write_agent, entry, expected):
    folder = write_agent(f"name: a\nmodel: scripted\nhttp_tools:\n  - {entry}\n")
    with pytest.raises(AgentSpecError) as caught:
        load_agent(folder)
    assert f"agent.yaml:4: {expected}" in str(caught.value)


def test_the_agent_schema_documents_http_tools():
    from halguru.agents.spec import agent_json_schema

    schema = agent_json_schema()
    fields = schema["$defs"]["HTTPToolSettings"]["properties"]
    assert {"name", "url", "method", "parameters", "auth", "openapi", "operation", "timeout"} <= set(fields)
    json.dumps(schema)


# -- DNS rebinding: the address checked is the address connected to ------------------------------------------
class _Host:
    """A tiny HTTP server on one loopback address that records the Host header of each request."""

    def __init__(self, address: str, port: int = 0) -> None:
        self.hosts: list[str] = []
        hosts = self.hosts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hosts.append(self.headers.get("Host", ""))
                body = f"hello from {address}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((address, port), Handler)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``rebind.example`` answers a "public" address (127.0.0.2, treated as public here) to the first lookup
    and the loopback 127.0.0.1 to every later one; both run a server on the same port."""
    from halguru.tools import netpin

    public = _Host("127.0.0.2")
    private = _Host("127.0.0.1", public.port)
    lookups: list[str] = []

    async def stub(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.2"] if len(lookups) == 1 else ["127.0.0.1"]

    monkeypatch.setattr(netpin, "resolver", stub)
    monkeypatch.setattr(netpin, "is_private", lambda address: address != "127.0.0.2")
    yield {"url": f"http://rebind.example:{public.port}/", "public": public, "private": private, "lookups": lookups}
    public.close()
    private.close()


def test_http_get_connects_to_the_address_it_checked(rebinding: dict[str, Any]) -> None:
    from halguru.tools.builtin import http_get

    assert call(http_get, url=rebinding["url"]) == "HTTP 200\nhello from 127.0.0.2"
    assert rebinding["lookups"] == ["rebind.example"]  # resolved once: no second answer to rebind with
    assert rebinding["private"].hosts == []
    assert rebinding["public"].hosts == [f"rebind.example:{rebinding['public'].port}"]  # Host kept the name
    with pytest.raises(ToolError, match=r"private or loopback address \(127\.0\.0\.1\)"):
        call(http_get, url=rebinding["url"])  # a lookup that answers loopback is refused outright
    assert rebinding["private"].hosts == []


def test_http_tools_connect_to_the_address_they_checked(rebinding: dict[str, Any], write_agent: Any) -> None:
    agent = load_agent(write_agent(f"name: a\nmodel: scripted\nhttp_tools:\n"
                                   f"  - name: fetch\n    url: {rebinding['url']}page\n"))
    assert call(agent.tools["fetch"]) == "hello from 127.0.0.2"
    with pytest.raises(ToolError, match="private or loopback"):
        call(agent.tools["fetch"])
    assert rebinding["private"].hosts == [] and len(rebinding["lookups"]) == 2


# IPv6 addresses that carry an IPv4 one: a NAT64 gateway (64:ff9b::/96, common on IPv6-only hosts), a 6to4
# relay or the kernel's IPv4-compatible forms reach that IPv4 address, yet Python 3.11 calls them all global.
EMBEDDED_PRIVATE = ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.5", "64:ff9b:1::a00:5",
                    "2002:7f00:1::1", "2002:a9fe:a9fe::", "::127.0.0.1", "::ffff:0:a9fe:a9fe", "::", "::1"]


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
def test_http_get_refuses_a_private_ipv4_address_inside_an_ipv6_one(address: str) -> None:
    from halguru.tools.builtin import http_get

    with pytest.raises(ToolError, match="private or loopback"):
        call(http_get, url=f"http://[{address}]/latest/meta-data/")


def test_ipv6_addresses_carrying_public_ipv4_ones_stay_public() -> None:
    from halguru.tools.netpin import is_private

    assert not any(is_private(a) for a in ("64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111"))
