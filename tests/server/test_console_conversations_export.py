"""The conversation search as CSV: an operator downloads every conversation the filters match (not only the
page shown), each once, with its user's email, and cells a spreadsheet would run as a formula kept as text."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.server.test_console_conversations import _chat, _headers, app  # noqa: F401  (the fixture)


def test_the_search_exports_every_match_as_csv(app, monkeypatch) -> None:  # noqa: F811
    from halguru_server.console import conversations_export_pages

    monkeypatch.setattr(conversations_export_pages, "BATCH", 2)  # several batches
    store = app.state.halguru.store
    client = TestClient(app)
    operator = {**_headers(store, "op@example.com", "operator"), "Accept": "text/html"}
    ann = _headers(store, "ann@example.com", "user")
    parcels = {_chat(client, ann, "echo", f"parcel {i}") for i in range(5)}
    _chat(client, ann, "echo", "hello")
    store.create_conversation("conv_formula", "echo", "=HYPERLINK(\"https://evil.example\")")
    page = client.get("/admin/conversations", headers=operator, params={"q": "parcel"})
    assert page.status_code == 200 and 'href="/admin/conversations/export.csv?q=parcel"' in page.text
    got = client.get("/admin/conversations/export.csv", headers=operator, params={"q": "parcel"})
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith('attachment; filename="halguru-conversations-')
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert len(rows) == 5 and {r["id"] for r in rows} == parcels
    assert {(r["agent"], r["channel"], r["user"], r["last_status"]) for r in rows} == {
        ("echo", "api", "ann@example.com", "ok")}
    assert all(r["updated_utc"].endswith("Z") for r in rows)
    every = list(csv.DictReader(io.StringIO(client.get("/admin/conversations/export.csv", headers=operator).text)))
    assert len(every) == 7
    assert next(r["title"] for r in every if r["id"] == "conv_formula").startswith("'=")
    bad = client.get("/admin/conversations/export.csv", headers=operator, params={"since": "junk"})
    assert bad.status_code == 422 and "is neither a date" in bad.text
    user = {**ann, "Accept": "text/html"}
    assert client.get("/admin/conversations/export.csv", headers=user).status_code == 403


def test_an_exports_bad_filter_links_back_to_its_page_not_to_the_export_unfiltered(app) -> None:  # noqa: F811
    """The page saying a date was wrong linked "Back to /admin/audit/export.csv": a click downloaded the whole
    log, without any filter."""
    store = app.state.halguru.store
    client = TestClient(app)
    admin = {**_headers(store, "root@example.com", "admin"), "Accept": "text/html"}
    for url, page in (("/admin/audit/export.csv?from=junk", "/admin/audit"),
                      ("/admin/conversations/export.csv?until=junk", "/admin/conversations")):
        got = client.get(url, headers=admin)
        assert got.status_code in (400, 422) and f'<a href="{page}">' in got.text and "export.csv\"" not in got.text
