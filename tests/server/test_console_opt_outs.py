"""Opt-outs (SMS STOP) were written by the Twilio channel and read by nothing: an operator could not see who had
opted out, nor let the agent answer someone whose STOP was a mistake, but with SQL on the store. Now `halguru
channels opt-outs|clear-opt-out`, ``GET /v1/channels/opt-outs``, ``POST /v1/channels/opt-outs/clear`` and the
console's Opt-outs page list and clear them, each clearing audited."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.server.test_console import ORIGIN, app, signed_in  # noqa: F401  (app: the fixture)

OURS, ANN, BOB = "+15550001111", "+15557654321", "+15559876543"


def _opted_out(store) -> None:
    store.set_opt_out("twilio", "echo", OURS, ANN, "STOP")
    store.set_opt_out("twilio", "private", OURS, BOB, "twilio error 21610")


def test_the_cli_lists_opt_outs_by_channel_and_agent_and_clears_one_audited(cli) -> None:
    from halguru.store import open_store

    store = open_store()
    assert cli("channels", "opt-outs").output.strip() == "Nobody has opted out."
    _opted_out(store)
    listed = cli("channels", "opt-outs").output
    assert ANN in listed and BOB in listed and "twilio error 21610" in listed
    only_echo = json.loads(cli("channels", "opt-outs", "--agent", "echo", "--json").output)
    assert [(r["agent"], r["sender"], r["ours"], r["reason"]) for r in only_echo] == [("echo", ANN, OURS, "STOP")]
    assert json.loads(cli("channels", "opt-outs", "--channel", "email", "--json").output) == []

    cleared = cli("channels", "clear-opt-out", ANN, "--agent", "echo").output
    assert f"Cleared: {ANN} (STOP) may be answered from {OURS} again." in cleared
    assert "until they text START" in cleared  # Twilio's side is not ours to clear
    assert store.get_opt_out("twilio", "echo", OURS, ANN) is None
    assert store.get_opt_out("twilio", "private", OURS, BOB) is not None
    [entry] = [e for e in store.list_audit(10) if e["action"] == "opt_out.clear"]
    assert entry["target"] == f"twilio:echo:{ANN}" and entry["details"]["reason"] == "STOP"
    again = cli("channels", "clear-opt-out", ANN, "--agent", "echo", code=1)
    assert f"{ANN} has not opted out of agent echo's twilio messages" in str(again.exception)
    blank = cli("channels", "clear-opt-out", " ", "--agent", "echo", code=1)
    assert str(blank.exception) == "give the sender and the agent, as `halguru channels opt-outs` lists them"


def test_the_api_and_console_list_opt_outs_and_an_admin_clears_one(app) -> None:  # noqa: F811
    store = app.state.halguru.store
    _opted_out(store)
    client = TestClient(app, base_url=ORIGIN)
    operator, admin, user = signed_in(app, "operator"), signed_in(app, "admin"), signed_in(app, "user")
    as_json = {"Accept": "application/json"}

    listed = client.get("/v1/channels/opt-outs?agent=echo", headers={**operator, **as_json})
    assert listed.status_code == 200, listed.text
    assert [(r["sender"], r["reason"]) for r in listed.json()["data"]] == [(ANN, "STOP")]
    assert client.get("/v1/channels/opt-outs", headers={**user, **as_json}).status_code == 403

    page = client.get("/admin/opt-outs", headers=operator).text
    assert 'href="/admin/opt-outs"' in page and ANN in page and BOB in page
    assert 'action="/admin/opt-outs/clear"' not in page  # an operator reads them; clearing is an admin's
    body = {"channel": "twilio", "agent": "echo", "sender": ANN}
    assert client.post("/v1/channels/opt-outs/clear", json=body, headers={**operator, **as_json}).status_code == 403
    assert store.get_opt_out("twilio", "echo", OURS, ANN) is not None

    cleared = client.post("/v1/channels/opt-outs/clear", json=body, headers={**admin, **as_json})
    assert cleared.status_code == 200, cleared.text
    assert [r["sender"] for r in cleared.json()["cleared"]] == [ANN] and "START" in cleared.json()["note"]
    assert store.get_opt_out("twilio", "echo", OURS, ANN) is None
    missing = client.post("/v1/channels/opt-outs/clear", json=body, headers={**admin, **as_json})
    assert missing.status_code == 404 and "has not opted out" in missing.json()["error"]["message"]

    page = client.get("/admin/opt-outs?agent=private", headers=admin).text
    assert 'action="/admin/opt-outs/clear"' in page and BOB in page and ANN not in page
    form = {k: v for k, v in admin.items() if k != "X-CSRF-Token"}
    back = client.post("/admin/opt-outs/clear", headers=form, follow_redirects=False,
                       data={"csrf_token": admin["X-CSRF-Token"], "channel": "twilio", "agent": "private",
                             "sender": BOB, "number": OURS, "back": "/admin/opt-outs?agent=private"})
    assert back.status_code == 303 and back.headers["location"].startswith("/admin/opt-outs?agent=private&")
    shown = client.get(back.headers["location"], headers=admin).text
    assert f"{BOB} may be answered by private again" in shown and "No opt-out matches these filters" in shown
    entries = [(e["action"], e["target"], e["actor"].split(":")[0]) for e in store.list_audit(10)
               if e["action"] == "opt_out.clear"]
    assert entries == [("opt_out.clear", f"twilio:private:{BOB}", "user"), ("opt_out.clear", f"twilio:echo:{ANN}",
                                                                            "user")]
