"""What a console page says happened ("Cancelled", "Deleted conversation …", a refusal in red) is what this
server said after the session's own form post: a link anyone could write showed any text there, as the
console's own word."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.test_console import ORIGIN, app, signed_in  # noqa: F401  (the fixture)

FORGED = "Your 2FA was reset: enrol again at https://evil.example"


def test_a_page_shows_what_its_post_said_and_not_a_links_own_text(app) -> None:  # noqa: F811
    store = app.state.halguru.store
    job = store.enqueue_job("run", "echo", {"input": "later"}, delay=3600)[0]["id"]
    client = TestClient(app, base_url=ORIGIN)
    admin, other = signed_in(app, "admin", "root@example.com"), signed_in(app, "admin", "other@example.com")
    posted = client.post(f"/admin/jobs/{job}/cancel", headers=admin,
                         data={"csrf_token": admin["X-CSRF-Token"], "back": "/admin/jobs?status=queued"},
                         follow_redirects=False)
    assert posted.status_code == 303
    location = posted.headers["location"]
    assert location.startswith("/admin/jobs?status=queued&notice=")
    shown = client.get(location, headers=admin)
    assert shown.status_code == 200 and f"{job} is cancelled" in shown.text
    assert f"{job} is cancelled" not in client.get(location, headers=other).text  # signed for that session only
    for page in (f"/admin/jobs?notice={FORGED}", f"/admin/deployments?error={FORGED}",
                 f"/admin/approvals?notice={FORGED}", f"/admin/opt-outs?error={FORGED}",
                 f"/admin/conversations?deleted={FORGED}", f"/admin/jobs?notice={FORGED}&said=00"):
        got = client.get(page, headers=admin)
        assert got.status_code == 200 and "evil.example" not in got.text, page


def test_a_signature_past_ascii_is_a_forged_one_not_a_500(app) -> None:  # noqa: F811
    """``said=é`` (a link anyone could write) was a 500: the signatures were compared as text, which
    ``hmac.compare_digest`` refuses past ASCII."""
    client = TestClient(app, base_url=ORIGIN, raise_server_exceptions=False)
    got = client.get(f"/admin/jobs?notice={FORGED}&said=%C3%A9", headers=signed_in(app, "admin", "root@example.com"))
    assert got.status_code == 200 and "evil.example" not in got.text
