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
