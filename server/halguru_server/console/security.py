"""What the security page and ``GET /v1/security`` show: failed sign-ins (the audit log's
``auth.sign_in_failed``) and accounts locked now, second-factor events (2FA turned on, off or reset, sign-ins with a
recovery code), refused requests by principal and route (401, 403, 429: the
middleware's counters, ``denials``; a 403 on a channel webhook is a failed signature check), tool calls refused
by a human or an allow-list (the runs' events), keys unused for N days, and a daily summary of all of them."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from halguru_server.console import denials, monitor
from halguru_server.keys import list_keys
from halguru_server.state import ServerState


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _refusals(state: ServerState, since: float) -> list[dict[str, Any]]:
    found = []
    for row in monitor.stats_store(state).refused_tool_calls(since):
        data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
        found.append({"at": row["ts"], "agent": row["agent"], "run_id": row["run_id"], "tool": data.get("name", ""),
                      "by": "human" if row["type"] == "approval_rejected" else "allow-list",
                      "reason": data.get("reason") or data.get("content", "")})
    return found


SECOND_FACTOR = {"user.2fa_enable": "2fa_enable", "user.2fa_disable": "2fa_disable", "user.reset_2fa": "2fa_reset"}


def _second_factor(state: ServerState, since: float) -> list[dict[str, Any]]:
    """Accounts' second factor turned on, off or reset (by an admin), and sign-ins with a recovery code (a lost
    phone, or a code someone else has), newest first; ``user`` is the account's email where it has one."""
    store = state.store
    events = [(e, SECOND_FACTOR[e["action"]]) for e in store.list_audit(500, action="user.", since=since)
              if e["action"] in SECOND_FACTOR]
    events += [(e, "recovery_code_sign_in") for e in store.list_audit(2000, action="auth.sign_in", since=since)
               if e["details"].get("factor") == "recovery_code"]
    emails = {}  # the events' own accounts: reading every account cost 0.5 s a view with 20,000
    for target in {e["target"] for e, _ in events}:
        if (user := store.get_user(target)) is not None and user["email"]:
            emails[target] = user["email"]
    return [{"at": e["time"], "event": event, "user": emails.get(e["target"], e["target"]), "actor": e["actor"],
             "address": e["address"]} for e, event in sorted(events, key=lambda found: -found[0]["seq"])]


def report(state: ServerState, app: Any, days: int = 7, unused_days: int = 30) -> dict[str, Any]:
    """The security overview over the last ``days`` days."""
    now = time.time()
    since = now - days * 86400
    failed = [{"at": e["time"], "who": e["target"], "address": e["address"], "step": e["details"].get("step", ""),
               "locked": bool(e["details"].get("locked"))}
              for e in state.store.list_audit(500, action="auth.sign_in_failed", since=since)]
    locked = [{"user": u["id"], "email": u["email"], "until": u["locked_until"], "failures": u["failed_logins"]}
              for u in state.store.list_users(locked_after=now)]
    counted = denials.of(app).since(int(since // 86400))
    by_who: Counter[tuple[str, str, int]] = Counter()
    for (_, status, principal, route), n in counted:
        by_who[(principal, route, status)] += n
    refused = _refusals(state, since)
    stale = [{"id": k.id, "name": k.name, "user_id": k.user_id, "last_used": k.last_used, "created": k.created}
             for k in list_keys(state.store) if k.revoked is None
             and (k.last_used or k.created) < now - unused_days * 86400]
    denied = [{"principal": p, "route": r, "status": s, "count": n} for (p, r, s), n in by_who.most_common(100)]
    return {"days": days, "unused_days": unused_days, "failed_sign_ins": failed, "locked": locked, "denied": denied,
            "second_factor": _second_factor(state, since), "refused_tool_calls": refused, "unused_keys": stale,
            "daily": _daily(failed, counted, refused, days, now)}


def _daily(failed: list[dict[str, Any]], counted: list[tuple[tuple[int, int, str, str], int]],
           refused: list[dict[str, Any]], days: int, now: float) -> list[dict[str, Any]]:
    """One row per UTC day, newest first."""
    zero = dict.fromkeys(("failed_sign_ins", "lockouts", "unauthenticated", "forbidden", "rate_limited",
                          "webhook_signatures", "refused_tool_calls"), 0)
    rows: dict[str, dict[str, Any]] = {_day(now - i * 86400): {"day": _day(now - i * 86400), **zero}
                                       for i in range(days)}
    for entry in failed:
        if (row := rows.get(_day(entry["at"]))) is not None:
            row["failed_sign_ins"] += 1
            row["lockouts"] += entry["locked"]
    for (day, status, _, route), n in counted:
        if (row := rows.get(_day(day * 86400))) is not None:
            webhook = status == 403 and route.split(" ", 1)[-1].startswith(denials.WEBHOOK_PREFIX)
            name = "webhook_signatures" if webhook else {401: "unauthenticated", 403: "forbidden",
                                                         429: "rate_limited"}[status]
            row[name] += n
    for call in refused:
        if (row := rows.get(_day(call["at"]))) is not None:
            row["refused_tool_calls"] += 1
    return list(rows.values())
