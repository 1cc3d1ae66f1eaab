"""The audit log's one way in: ``record`` an action (who, what, on what) in the store's hash-chained log.

Here, below the CLI, orchestration and jobs, so that `halguru runs approve` and serve's routes record the
same way (serve adds the request's principal and address: ``halguru_server.audit``). Action names are
``resource.verb``; ``ACTIONS`` are the ones the code records today (docs/audit.md lists them; tests/test_docs_truth.py
holds the three together), and a new one must keep that shape.

A failed write is logged, not raised: by the time ``record`` runs the action has happened (a key exists, a
role changed), and failing the request would report it as not done.

``HALGURU_AUDIT_KEY`` (any string) keys the chain with HMAC-SHA256, so that someone who can write the
database cannot recompute it after an edit; the store's ``sql_audit`` says more. The trade-off: verifying
then needs the key too, and a lost or changed key leaves the entries it keyed unverifiable (verify names the
first). Keep the key where the database's administrators cannot read it (a secret of the serve deployment).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halguru.store.base import Store
    from halguru.store.records import AuditCheck, AuditRecord

log = logging.getLogger(__name__)

KEY_ENV = "HALGURU_AUDIT_KEY"
ACTIONS = frozenset({
    "auth.sign_in", "auth.sign_in_failed", "auth.sign_out", "auth.password_change", "auth.password_change_failed",
    "auth.password_reset", "user.create", "user.role", "user.disable", "user.enable", "user.unlock", "user.invite",
    "user.take_over", "user.email", "session.revoke",
    "user.reset_2fa", "user.2fa_enable", "user.2fa_disable", "key.create", "key.revoke", "run.approve",
    "run.reject", "run.resume", "run.cancel",
    "conversation.delete", "job.cancel", "job.retry", "tool.call", "conversation.takeover",
    "conversation.handback", "conversation.reply", "conversation.export", "conversation.retention",
    "agent.publish", "agent.rollback", "agent.unpublish", "agent.delete_version", "opt_out.clear",
})
_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9][a-z0-9_]*$")  # user.2fa_enable


def audit_key() -> bytes | None:
    """The HMAC key from ``HALGURU_AUDIT_KEY``, or None (plain SHA-256)."""
    value = os.environ.get(KEY_ENV, "")
    return value.encode() if value else None


def cli_actor() -> str:
    """Who acts from the shell: ``cli:<OS user>`` (the CLI has no principal of its own)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"cli:uid{os.getuid()}"


def record(store: Store | None, actor: str | None, action: str, target: str = "",
           details: Mapping[str, Any] | None = None, address: str | None = None) -> AuditRecord | None:
    """Append one entry (``actor`` None: the CLI's user); the entry, or None when the store failed (logged).
    ValueError for an action name that is not ``resource.verb``: a bug, not a runtime condition."""
    if not _NAME.fullmatch(action):
        raise ValueError(f"audit action {action!r} is not named resource.verb")
    try:
        if store is None:
            from halguru.store import open_store

            store = open_store()
        return store.append_audit(actor or cli_actor(), action, target, details, address, key=audit_key())
    except Exception:  # the action is done; a lost entry is logged loudly rather than failing it
        log.exception("could not record %s on %s in the audit log", action, target)
        return None


def verify(store: Store) -> tuple[AuditCheck, str]:
    """Verify the whole chain (with the key, if set): what was found, and the line that says it (the CLI
    prints it, the API returns it)."""
    check = store.verify_audit(key=audit_key())
    if check["ok"]:
        return check, f"audit chain intact: {check['entries']} entries (head {check['head'][:16]})"
    return check, f"audit chain broken at entry {check['seq']}: {check['reason']}"
