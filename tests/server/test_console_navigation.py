"""The console's navigation and captions over HTTP: the section a page is in is marked current (for its own pages
too), and a chart of times says they are UTC."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.server.test_console import ORIGIN, app, signed_in  # noqa: F401  (the fixture)


def test_the_navigation_marks_the_section_of_a_page_below_it(app) -> None:  # noqa: F811
    """On a conversation's or a user's own page no section was marked current: the navigation (and a screen
    reader's "current page") said nothing of where one was."""
    store = app.state.halguru.store
    store.create_conversation("conv_nav", "echo", "Parcel")
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    user_id = store.user_by_email("root@example.com")["id"]
    for page, section in (("/admin", "/admin"), ("/admin/users", "/admin/users"), (f"/admin/users/{user_id}",
                          "/admin/users"), ("/admin/conversations/conv_nav", "/admin/conversations"),
                          ("/admin/audit?action=user.", "/admin/audit")):
        got = client.get(page, headers=admin)
        assert got.status_code == 200, page
        assert re.findall(r'<a href="([^"]+)" aria-current="page">', got.text) == [section], page


def test_a_chart_of_times_says_they_are_utc(app) -> None:  # noqa: F811
    """Every time on a page is shown in the viewer's zone (or says UTC), but the monitoring timeline's hours and
    the analytics' days were UTC without a word: an operator at UTC+5:30 read a spike at 09:00 as 09:00 theirs."""
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    for page, caption in (("/admin", "Runs and errors over time"), ("/admin/analytics", "Runs per day")):
        got = client.get(page, headers=admin)
        assert got.status_code == 200 and f"<figcaption>{caption} (UTC)</figcaption>" in got.text, page


def test_a_job_id_pasted_into_the_jobs_page_shows_that_job_and_its_actions_come_back_to_it(app) -> None:  # noqa: F811
    """The jobs page filtered by status and agent only: a job id from a log line or a user's report meant
    paging through 50 jobs at a time looking for it."""
    store = app.state.halguru.store
    jobs = [store.enqueue_job("run", "echo", {"input": f"job {i}"}, delay=3600)[0]["id"] for i in range(60)]
    client = TestClient(app, base_url=ORIGIN)
    admin = signed_in(app, "admin", "root@example.com")
    oldest = jobs[0]
    got = client.get("/admin/jobs", headers=admin, params={"id": f" {oldest} "})
    assert got.status_code == 200 and re.findall(r'<tr data-job="([^"]+)"', got.text) == [oldest]
    assert f'value="{oldest}"' in got.text  # the box keeps it
    posted = client.post(f"/admin/jobs/{oldest}/cancel", headers=admin, follow_redirects=False, data={
        "csrf_token": admin["X-CSRF-Token"], "back": f"/admin/jobs?id={oldest}"})
    assert posted.status_code == 303
    cancelled = client.get(posted.headers["location"], headers=admin)
    assert cancelled.status_code == 200 and re.findall(r'<tr data-job="([^"]+)"', cancelled.text) == [oldest]
    assert f"{oldest} is cancelled" in cancelled.text
    missing = client.get("/admin/jobs", headers=admin, params={"id": "job_nope"})
    assert missing.status_code == 200 and "no job &#39;job_nope&#39;" in missing.text and "No jobs." in missing.text


def test_the_audit_log_filters_by_an_actors_email(app) -> None:  # noqa: F811
    """The actor filter took only ``user:<id>``: to see what alice@example.com did an operator first had to find
    her id. An email typed is that user's entries (the page and its CSV export)."""
    store = app.state.halguru.store
    client = TestClient(app, base_url=ORIGIN)
    root, other = signed_in(app, "admin", "root@example.com"), signed_in(app, "admin", "other@example.com")
    for who, target in ((root, "usr_by_root"), (other, "usr_by_other")):
        store.create_user(target, f"{target}@example.com", target, "user")
        assert client.post(f"/admin/users/{target}/disable", headers=who, data={"csrf_token": who["X-CSRF-Token"]},
                           follow_redirects=False).status_code == 303
    page = client.get("/admin/audit", headers=root, params={"actor": " Root@Example.com "})
    assert page.status_code == 200 and "usr_by_root" in page.text and "usr_by_other" not in page.text
    csv = client.get("/admin/audit/export.csv", headers=root, params={"actor": "other@example.com"}).text
    assert "usr_by_other" in csv and "usr_by_root" not in csv
    nobody = client.get("/admin/audit", headers=root, params={"actor": "nobody@example.com"})
    assert nobody.status_code == 200 and "usr_by_root" not in nobody.text and "No entries match" in nobody.text


def test_a_jobs_row_links_to_the_conversation_it_answers_in(app) -> None:  # noqa: F811
    store = app.state.halguru.store
    store.create_conversation("conv_jobbed", "echo", "Parcel")
    job = store.enqueue_job("run", "echo", {"input": "later", "conversation_id": "conv_jobbed"}, delay=3600)[0]["id"]
    alone = store.enqueue_job("run", "echo", {"input": "alone", "conversation_id": None}, delay=3600)[0]["id"]
    client = TestClient(app, base_url=ORIGIN)
    page = client.get("/admin/jobs", headers=signed_in(app, "admin", "root@example.com")).text
    assert f'href="/admin/conversations/conv_jobbed" aria-label="Conversation of job {job}"' in page
    assert f'aria-label="Conversation of job {alone}"' not in page
