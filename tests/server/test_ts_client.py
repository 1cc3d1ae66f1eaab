"""The TypeScript client in clients/typescript/ is current: regenerating it from the app changes nothing."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "typescript"
STALE = "stale: run `.venv/bin/python scripts/gen_ts_client.py` (after `npm ci` in clients/typescript) and commit"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_ts_client", ROOT / "scripts" / "gen_ts_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_openapi_document_in_the_repo_is_the_apps() -> None:
    gen = _generator()
    assert (PACKAGE / "openapi.json").read_text(encoding="utf-8") == gen.render(gen.openapi_document()), STALE


def test_typescript_types_are_generated_from_it_and_compile(tmp_path: Path) -> None:
    gen = _generator()
    if not gen.GENERATOR.exists() or shutil.which("node") is None:
        pytest.skip("node and `npm ci` in clients/typescript are needed to regenerate the types")
    out = tmp_path / "schema.d.ts"
    gen.generate_types(PACKAGE / "openapi.json", out)
    assert out.read_text(encoding="utf-8") == (PACKAGE / "src" / "schema.d.ts").read_text(encoding="utf-8"), STALE
    tsc = subprocess.run([str(PACKAGE / "node_modules" / ".bin" / "tsc"), "-p", "."], cwd=PACKAGE,
                         capture_output=True, text=True)
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr


def _compiled(tmp_path: Path, *extra: str) -> Path:
    """src/index.ts (and ``extra`` files) compiled to CommonJS in a folder node runs them from."""
    if not (PACKAGE / "node_modules" / ".bin" / "tsc").exists() or shutil.which("node") is None:
        pytest.skip("node and `npm ci` in clients/typescript are needed to run the client")
    out = tmp_path / "js"
    subprocess.run([str(PACKAGE / "node_modules" / ".bin" / "tsc"), "src/index.ts", *extra, "--outDir", str(out),
                    "--rootDir", ".", "--module", "commonjs", "--moduleResolution", "node10", "--target", "ES2022",
                    "--skipLibCheck"], cwd=PACKAGE, check=True, capture_output=True)
    (out / "package.json").write_text('{"type": "commonjs"}')
    (out / "node_modules").symlink_to(PACKAGE / "node_modules")
    return out


def _node(out: Path, script: str, *args: str) -> subprocess.Popen[str]:
    """``script`` run by node beside the compiled client (``C``: its exports; ``args``: ``args``), printing
    what it resolves to as JSON."""
    body = f"const C = require('./src/index.js'); const args = process.argv.slice(1); ({script})()" \
           ".then((out) => console.log(JSON.stringify(out)), (e) => { console.error(e); process.exit(1); })"
    return subprocess.Popen(["node", "-e", body, *args], cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(ran: subprocess.Popen[str]) -> Any:
    stdout, stderr = ran.communicate(timeout=60)
    assert ran.returncode == 0, stderr
    return json.loads(stdout)


# what a caught error carries, as a caller would look at it
SHOW = "(e) => ({ name: e.name, halguru: e instanceof C.HalguruError, status: e.status, code: e.code, " \
       "retryAfter: e.retryAfter, requestId: e.requestId, message: e.message })"


def test_typescript_client_streams_an_answer_from_a_real_server(tmp_path: Path, serve, api_key) -> None:
    """examples/stream.ts, compiled and run with node: the tokens as they come, then run_finished's status.
    A streamed answer threw a JSON SyntaxError in openapi-fetch, and the client had no way to read its events."""
    out = _compiled(tmp_path, "examples/stream.ts")
    server = serve()
    script = ("require('./examples/stream.js').streamed(process.argv[1], process.argv[2], 'slow', 'go')"
              ".then((seen) => console.log(JSON.stringify(seen)))")
    ran = subprocess.run(["node", "-e", script, server.url, api_key()], cwd=out, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert len(seen) > 10 and seen[-1] == "[ok]" and "".join(seen[:-1]).split() == [f"word{i}" for i in range(40)]


def test_refusals_throw_typed_errors_and_a_429_is_retried(tmp_path: Path, serve, api_key) -> None:
    """A 404, a wrong key and a real 429 (too many streams followed: one per client here) throw HalguruError
    subclasses with the server's status, code, Retry-After and request id; a patient client's retries of the
    429 get in once the other stream ends. They came back as openapi-fetch's `error`, never retried."""
    out = _compiled(tmp_path)
    server = serve(max_followers=1)
    ran = _node(out, """async () => {
      const [url, key] = args, show = """ + SHOW + """, got = {}, retries = [];
      const api = C.halguru(url, key);
      await api.GET('/v1/runs/{run_id}', { params: { path: { run_id: 'run_nope' } } })
        .catch((e) => got.missing = show(e));
      await C.halguru(url, 'hg_wrong').GET('/v1/agents').catch((e) => got.wrongKey = show(e));
      const { data: chat } = await api.POST('/v1/conversations', { body: { agent: 'slow' } });
      const { data } = await api.POST('/v1/conversations/{conversation_id}/messages', { parseAs: 'stream',
        params: { path: { conversation_id: chat.id } }, body: { content: 'go', stream: true } });
      const answer = C.events(data);
      const run = { params: { path: { run_id: (await answer.next()).value.run_id } }, parseAs: 'stream' };
      const { data: followed } = await api.GET('/v1/runs/{run_id}/events', run);  // the one stream allowed
      const hasty = C.halguru(url, key, { maxRetries: 1, maxWait: 0.1,
                                          onRetry: (n, wait, e) => retries.push([n, wait, e.code]) });
      await hasty.GET('/v1/runs/{run_id}/events', run).catch((e) => got.limited = show(e));
      const last = async (stream) => { let type; for await (const event of stream) type = event.type; return type; };
      const patient = C.halguru(url, key, { maxRetries: 20, maxWait: 0.5 });
      got.ends = await Promise.all([last(answer), last(C.events(followed)),
        patient.GET('/v1/runs/{run_id}/events', run).then(({ data }) => last(C.events(data)))]);
      return { ...got, retries };
    }""", server.url, api_key())
    got = _result(ran)
    assert got["missing"]["name"] == "NotFound" and got["missing"]["halguru"]
    assert (got["missing"]["status"], got["missing"]["code"]) == (404, "not_found")
    assert "run_nope" in got["missing"]["message"] and got["missing"]["requestId"]
    assert (got["wrongKey"]["name"], got["wrongKey"]["status"]) == ("AuthError", 401)
    limited = got["limited"]
    assert (limited["name"], limited["status"], limited["code"], limited["retryAfter"]) == \
        ("RateLimited", 429, "too_many_streams", 5)
    assert limited["requestId"] and "too many streams" in limited["message"]
    assert got["retries"] == [[0, 0.1, "too_many_streams"]]  # Retry-After 5, capped by maxWait; once
    assert got["ends"] == ["run_finished"] * 3


def test_a_503_while_draining_is_retried_until_the_server_takes_the_message(tmp_path: Path, serve,
                                                                           api_key) -> None:
    """A message sent while the server drains gets 503 (Retry-After 5): retried after at most maxWait, it is
    answered once the server takes messages again, and stored once."""
    out = _compiled(tmp_path)
    server = serve()
    conversation = httpx.post(f"{server.url}/v1/conversations", json={"agent": "echo"},
                              headers={"Authorization": f"Bearer {(key := api_key())}"}).json()["id"]
    lifecycle, refused = server.state.lifecycle, threading.Event()

    class Draining(type(lifecycle)):  # type: ignore[misc]
        """Draining until it has refused a message, then for 0.5 s more: node's start can outlast any timer."""

        @property
        def stopping(self) -> bool:
            if not refused.is_set():
                refused.set()
                threading.Timer(0.5, lambda: setattr(lifecycle, "__class__", Plain)).start()
            return True

        @stopping.setter
        def stopping(self, value: bool) -> None:
            pass

    Plain = type(lifecycle)
    lifecycle.__class__ = Draining
    ran = _node(out, """async () => {
      const [url, key, id] = args, retries = [];
      const api = C.halguru(url, key, { maxWait: 1,
                                        onRetry: (n, wait, e) => retries.push([n, wait, e.status, e.retryAfter]) });
      const { data } = await api.POST('/v1/conversations/{conversation_id}/messages',
        { params: { path: { conversation_id: id } }, body: { content: 'hello there' } });
      return { status: data.status, retries };
    }""", server.url, key, conversation)
    got = _result(ran)
    assert got == {"status": "ok", "retries": [[0, 1, 503, 5]]}
    assert [m.content for m in server.state.store.get_messages(conversation) if m.role == "user"] == \
        ["hello there"]


def test_a_message_whose_answer_a_shutdown_cut_is_not_sent_again(tmp_path: Path, serve, api_key) -> None:
    """The 503 `shutdown` of a message the server had stored (its run cut by the shutdown's grace period)
    throws at once: sent again, it would be a second turn (the Python client stored it twice so)."""
    out = _compiled(tmp_path)
    server = serve()
    key = api_key()
    conversation = httpx.post(f"{server.url}/v1/conversations", json={"agent": "slow"},
                              headers={"Authorization": f"Bearer {key}"}).json()["id"]
    ran = _node(out, """async () => {
      const [url, key, id] = args, retries = [];
      const api = C.halguru(url, key, { maxWait: 0.1, onRetry: (n) => retries.push(n) });
      return await api.POST('/v1/conversations/{conversation_id}/messages',
        { params: { path: { conversation_id: id } }, body: { content: 'go' } })
        .then(() => ({ retries }), (e) => ({ error: (""" + SHOW + """)(e), retries }));
    }""", server.url, key, conversation)
    lifecycle = server.state.lifecycle
    deadline = time.monotonic() + 30
    while not lifecycle.inflight:
        assert time.monotonic() < deadline and ran.poll() is None, "the run never started"
        time.sleep(0.02)
    lifecycle.loop.call_soon_threadsafe(lifecycle.interrupt)  # the grace period is over
    got = _result(ran)
    assert (got["error"]["name"], got["error"]["status"], got["error"]["code"]) == ("Unavailable", 503, "shutdown")
    assert got["retries"] == []
    assert [m.content for m in server.state.store.get_messages(conversation) if m.role == "user"] == ["go"]


def test_a_stream_that_breaks_off_or_ends_before_its_run_finished_throws_a_stream_cut(tmp_path: Path) -> None:
    """events() returned quietly from a body that ended without its run_finished (the loop ended as if answered)
    and let a broken connection's TypeError through, naming no run."""
    out = _compiled(tmp_path)
    ran = _node(out, """async () => {
      const show = """ + SHOW + """, got = {};
      const started = 'data: {"type": "run_started", "run_id": "run_1"}\\n\\n';
      const body = (end) => new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode(started)); },
                                                  pull: end });  // once run_started was read
      const read = async (stream) => { const seen = []; for await (const e of C.events(stream)) seen.push(e.type);
                                        return seen; };
      got.ended = await read(body((c) => c.close())).catch(show);
      got.broken = await read(body((c) => c.error(new TypeError('terminated')))).catch(show);
      const whole = started + 'data: {"type": "run_finished", "run_id": "run_1", "status": "ok"}\\n\\n';
      const text = new TextEncoder().encode(whole);
      got.whole = await read(new ReadableStream({ start(c) { c.enqueue(text); c.close(); } }));
      const aborted = new DOMException('stopped', 'AbortError');
      got.aborted = await read(body((c) => c.error(aborted))).catch((e) => e.name);
      return got;
    }""")
    got = _result(ran)
    for case, what in (("ended", "ended before the run finished"),
                       ("broken", "broke off before the run finished (TypeError: terminated)")):
        assert {k: got[case][k] for k in ("name", "halguru", "status", "code", "message")} == {
            "name": "StreamCut", "halguru": True, "status": 200, "code": "stream_cut",
            "message": f"the stream of run run_1 {what}: GET /v1/runs/run_1 says how it ended"}, case
    assert got["whole"] == ["run_started", "run_finished"] and got["aborted"] == "AbortError"


def test_a_refusal_that_is_not_json_is_a_one_line_message(tmp_path: Path) -> None:
    """A proxy's HTML 502 page became a HalguruError message of seven lines (the Python client's is one)."""
    out = _compiled(tmp_path)
    ran = _node(out, """async () => {
      const page = ['<html>', '<head><title>502 Bad Gateway</title></head>', '<body>', '<center>nginx</center>',
                    '</body>', '</html>', ''].join('\\n');
      const fetch = async () => new Response(page, { status: 502, headers: { 'Content-Type': 'text/html' } });
      const api = C.halguru('http://hg', 'k', { fetch });
      return await api.GET('/v1/agents').catch((e) => [e.name, e.status, e.message]);
    }""")
    assert _result(ran) == ["HalguruError", 502, "<html> <head><title>502 Bad Gateway</title></head> <body> "
                                                 "<center>nginx</center> </body> </html>"]
