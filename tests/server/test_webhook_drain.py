"""A webhook that arrives while the server drains (SIGTERM) is still taken: Twilio retries a failed message
webhook only when its URL asks it to (connection overrides); by default it logs an error and, without a fallback
URL, drops the message, so a 503 lost it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from twilio.request_validator import RequestValidator

TOKEN = "e" * 32
PUBLIC = "https://bot.example.com"


def _sms_agent(agents_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent ``sms``, answering +15550001111 on Twilio."""
    monkeypatch.setenv("DRAIN_TWILIO_TOKEN", TOKEN)
    (agents_dir / "sms").mkdir()
    (agents_dir / "sms" / "agent.yaml").write_text(yaml.safe_dump({
        "name": "sms", "model": "scripted", "instructions": "Hi.",
        "channels": {"twilio": {"account_sid": "AC" + "0123456789abcdef" * 2, "auth_token": "DRAIN_TWILIO_TOKEN",
                                "public_url": PUBLIC, "numbers": ["+15550001111"]}}}))


def test_a_signed_message_during_the_drain_is_queued_not_refused(serve, agents_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _sms_agent(agents_dir, monkeypatch)
    server = serve(worker=False)
    server.state.lifecycle.stopping = True  # SIGTERM's drain: no new runs here; the job waits for a worker
    form = {"MessageSid": "SM" + "a" * 32, "From": "+15557654321", "To": "+15550001111", "Body": "still there?"}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/channels/twilio/sms", form)
    answer = httpx.post(f"{server.url}/channels/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200 and "<Response>" in answer.text
    jobs = server.state.store.list_jobs(10, agents=["sms"])
    assert [(j["kind"], j["status"], j["payload"]["text"]) for j in jobs] == [("reply", "queued", "still there?")]
    unsigned = httpx.post(f"{server.url}/channels/twilio/sms", data=form, headers={"X-Twilio-Signature": "x"})
    assert unsigned.status_code == 403  # still checked first


def test_a_message_while_the_store_is_down_is_a_503_not_a_channel_failure(
        serve, agents_dir: Path, monkeypatch: pytest.MonkeyPatch, new_postgres_database,
        caplog: pytest.LogCaptureFixture) -> None:
    """The store did not answer while a signed message came: a 500 'the channel's webhook failed', logged with a
    traceback as a bug of the twilio channel's plugin. It is the one answer of a store outage (503, Retry-After),
    so Twilio's fallback URL or retry settings can act and the operator reads what happened."""
    import psycopg

    from tests.server.test_store_outage import POSTGRES_ADMIN

    url = new_postgres_database()
    monkeypatch.setenv("HALGURU_DATABASE_URL", url)
    _sms_agent(agents_dir, monkeypatch)
    server = serve(worker=False)
    form = {"MessageSid": "SM" + "b" * 32, "From": "+15557654321", "To": "+15550001111", "Body": "anyone?"}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/channels/twilio/sms", form)
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        answer = httpx.post(f"{server.url}/channels/twilio/sms", data=form, headers={"X-Twilio-Signature": signature},
                            timeout=60)
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    assert (answer.status_code, answer.json()["error"]["type"]) == (503, "unavailable")
    assert answer.headers["retry-after"]
    assert not [r for r in caplog.records if "failed on a webhook request" in r.getMessage()]
