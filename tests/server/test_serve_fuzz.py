"""Fuzz the API with schemathesis against its own OpenAPI document: no 500s, responses match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


def test_api_survives_fuzzing(serve, api_key) -> None:
    server = serve()
    key = api_key()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    schema.config.output.sanitization.update(enabled=False)
    failures: list[str] = []
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {key}"}, timeout=10)
            case.validate_response(response, checks=checks)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)


pytestmark = pytest.mark.timeout(240)
