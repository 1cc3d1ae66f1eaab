"""An MCP server URL that is not an MCP endpoint (a web page, the site's root): the run says what to give instead."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halguru import run_sync
from halguru.models.scripted import ScriptedModel
from tests.mcp.test_mcp_tools import of_type

pytestmark = pytest.mark.timeout(60)


class _Page(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b"<html><body>Welcome to our site</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def test_a_url_that_answers_with_a_web_page_is_said_to_be_no_mcp_endpoint(tmp_path):
    site = ThreadingHTTPServer(("127.0.0.1", 26530), _Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        folder = tmp_path / "webby"
        folder.mkdir()
        (folder / "agent.yaml").write_text("name: webby\nmodel: scripted\nmcp:\n  - name: site\n"
                                           "    url: http://127.0.0.1:26530/\n    timeout: 10\n")
        result = run_sync(folder, "hi", model=ScriptedModel(["hello"]))
    finally:
        site.shutdown()
        site.server_close()
    assert result.ok
    [error] = [e.message for e in of_type(result, "error")]
    assert error == ("mcp server 'site' failed to start: it answered with text/html, not MCP: give the server's "
                     "streamable HTTP endpoint (often /mcp) (http://127.0.0.1:26530/)")
