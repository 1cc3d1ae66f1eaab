"""What the server answers is in its OpenAPI document: a body that is not JSON (400) or not sent as JSON (415)
on any route taking a JSON body, and the web chat's 202 for a conversation an operator holds. Generated clients
(the TypeScript one) and fuzzers met these statuses undocumented on most routes."""

from __future__ import annotations

from typing import Any


def test_every_json_body_route_documents_the_400_and_415_it_answers(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    run_id = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["run_id"]
    for path in (f"/v1/runs/{run_id}/approve", "/v1/conversations", "/chat/api/conversations"):
        assert client.post(path, content=b"\x00", headers={"Content-Type": "application/json"}).status_code == 400
        assert client.post(path, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    missing = [f"{method.upper()} {path} {code}" for path, ops in doc["paths"].items() for method, op in ops.items()
               if "application/json" in op.get("requestBody", {}).get("content", {})
               for code in ("400", "415") if code not in op["responses"]]
    assert missing == []
    approve = doc["paths"]["/v1/runs/{run_id}/approve"]["post"]["responses"]
    assert approve["400"]["content"] == approve["422"]["content"]  # the route's own error shape
    completions = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["415"]
    assert completions["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIErrorBody")


def test_the_web_chat_documents_the_202_of_a_conversation_held_by_an_operator(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    assert "202" in doc["paths"]["/chat/api/conversations/{conversation_id}/messages"]["post"]["responses"]


def test_a_bad_cursor_and_a_bundle_of_another_type_are_documented(client: Any) -> None:
    """schemathesis: GET /v1/admin/conversations?cursor=junk answered an undocumented 400, POST /v1/deployments
    with another Content-Type an undocumented 415."""
    paths = client.get("/openapi.json").json()["paths"]
    assert "400" in paths["/v1/admin/conversations"]["get"]["responses"]
    assert "415" in paths["/v1/deployments"]["post"]["responses"]
