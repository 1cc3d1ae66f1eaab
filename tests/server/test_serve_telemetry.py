"""`halguru serve` with OpenTelemetry on: runs exported over OTLP/HTTP, their ids in the JSON request log lines."""

from __future__ import annotations

import json
import signal
import time

import httpx

from tests.otlp_receiver import Receiver
from tests.server.test_serve_process import start

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_serve_exports_runs_and_its_request_log_lines_carry_their_trace_ids(
        halguru_cmd, subprocess_env, agents_dir):
    receiver = Receiver()
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("OTEL_")}
    env = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    try:
        proc, url = start(halguru_cmd, env, str(agents_dir), "--dev")
        conv = httpx.post(f"{url}/v1/conversations", json={"agent": "echo"}).json()["id"]
        answered = httpx.post(f"{url}/v1/conversations/{conv}/messages", json={"content": "hello"},
                              headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                                       "x-request-id": "req-joined"}, timeout=30)
        assert answered.status_code == 200 and answered.json()["status"] == "ok"
        with httpx.stream("POST", f"{url}/v1/conversations/{conv}/messages", timeout=30,
                          json={"content": "again", "stream": True}, headers={"x-request-id": "req-streamed"}) as r:
            assert "event: run_finished" in r.read().decode()
        job = httpx.post(f"{url}/v1/jobs", json={"agent": "echo", "input": "queued"}).json()["id"]
        while httpx.get(f"{url}/v1/jobs/{job}").json()["status"] != "done":  # the in-process worker runs it
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # the exporter is flushed as the server stops (nothing sent before)
        assert proc.wait(15) in (0, -signal.SIGTERM)
        spans = receiver.wait_for(6)
    finally:
        receiver.close()
    [queued] = [s for s in spans if s.attributes.get("halguru.job_id") == job]
    assert queued.name == "invoke_agent echo" and queued.parent_id == ""
    roots = {s.attributes["halguru.request_id"]: s for s in spans if "halguru.request_id" in s.attributes}
    joined, streamed = roots["req-joined"], roots["req-streamed"]
    assert (joined.trace_id, joined.parent_id) == (CALLER_TRACE, CALLER_SPAN)  # the caller's trace goes on
    assert streamed.trace_id != CALLER_TRACE and streamed.parent_id == ""
    assert {s.name for s in spans} == {"invoke_agent echo", "chat scripted"}
    assert joined.attributes["gen_ai.conversation.id"] == conv
    logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    access = {entry["request_id"]: entry for entry in logs if entry["msg"] == "request"}
    for request_id, root in roots.items():
        assert (access[request_id]["trace_id"], access[request_id]["span_id"]) == (root.trace_id, root.span_id)
    created = [entry for entry in logs if entry["msg"] == "request" and entry["path"] == "/v1/conversations"]
    assert created and "trace_id" not in created[0]  # no run, no span
