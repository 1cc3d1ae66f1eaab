"""Background work: a durable job queue in the store, the worker that runs it, cron schedules, and the
channel pipeline (a message arrives -> stored and queued once -> the agent runs -> the reply goes out once)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

LEASE_LAPSED = "its worker stopped renewing its lease (stopped or killed): the next worker to look takes it over"


def lease_lapsed(job: Mapping[str, Any], now: float | None = None) -> bool:
    """Whether ``job`` reads 'running' only because its worker died: it stays so until another worker claims it
    (for ever if none runs), so the CLI and the console say so instead of showing it busy."""
    expires = job.get("lease_expires")
    return job["status"] == "running" and expires is not None and expires < (time.time() if now is None else now)
