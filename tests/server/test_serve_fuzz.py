"""Fuzz the API with schemathesis against its own OpenAPI document: no 500s, responses match the schema.

Random ids only ever reach the 404 branch, so half the examples of a route with a conversation or run id
get real ones (objects made first; a DELETE gets a fresh conversation each time): the fuzzed bodies and
queries then reach the code behind the lookups.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# POST /v1/deployments takes a bundle (application/gzip): fuzzed as raw bytes, as application/octet-stream is
schemathesis.serializer.alias("application/gzip", "application/octet-stream")


def test_api_survives_fuzzing(serve, api_key) -> None:
    server = serve()
    key = api_key()
    auth = {"Authorization": f"Bearer {key}"}
    api = httpx.Client(base_url=server.url, headers=auth, timeout=30)

    def conversation() -> str:
        return api.post("/v1/conversations", json={"agent": "echo"}).json()["id"]

    conv = conversation()
    run_id = api.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["run_id"]
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    schema.config.output.sanitization.update(enabled=False)
    failures: list[str] = []
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    reached: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy(), real=st.booleans())
        def check(case, real: bool) -> None:
            params = case.path_parameters or {}
            if real and "conversation_id" in params:
                params["conversation_id"] = conversation() if case.method.upper() == "DELETE" else conv
            if real and "run_id" in params:
                params["run_id"] = run_id
            response = case.call(headers=auth, timeout=10)
            if response.status_code != 404:
                reached.add(f"{case.method.upper()} {case.path}")
            case.validate_response(response, checks=checks)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    api.close()
    assert not failures, "\n\n".join(failures)
    for route in ("GET /v1/conversations/{conversation_id}", "POST /v1/conversations/{conversation_id}/messages",
                  "GET /v1/runs/{run_id}", "POST /v1/runs/{run_id}/approve",
                  "POST /chat/api/conversations/{conversation_id}/messages"):
        assert route in reached, f"{route}: every example got 404"


pytestmark = pytest.mark.timeout(400)
