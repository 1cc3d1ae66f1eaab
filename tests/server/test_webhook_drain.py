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


def test_a_signed_message_during_the_drain_is_queued_not_refused(serve, agents_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAIN_TWILIO_TOKEN", TOKEN)
    (agents_dir / "sms").mkdir()
    (agents_dir / "sms" / "agent.yaml").write_text(yaml.safe_dump({
        "name": "sms", "model": "scripted", "instructions": "Hi.",
        "channels": {"twilio": {"account_sid": "AC" + "0123456789abcdef" * 2, "auth_token": "DRAIN_TWILIO_TOKEN",
                                "public_url": PUBLIC, "numbers": ["+15550001111"]}}}))
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
