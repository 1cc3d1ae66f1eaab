"""The audit log (either backend): an append-only table of privileged actions, each entry hash-chained to the
one before it, so that editing, deleting or reordering a stored entry shows in ``verify_audit``.

An entry's ``hash`` is SHA-256 (HMAC-SHA256 with ``key``, ``HALGURU_AUDIT_KEY``) over a canonical JSON
array of its fields and the previous entry's hash. It is computed in the write transaction that read the
previous entry: SQLite's ``BEGIN IMMEDIATE`` already runs writers one at a time; on PostgreSQL the
transaction takes the ``audit`` advisory lock first, so writers of every process and replica append to one
chain (``seq`` is assigned here, not by a sequence, so that a deleted entry is a gap; it is also the primary
key, so two writers could never both append the same ``seq``).

Without a key, whoever can write the database can also recompute every hash after the entry they changed;
the chain then proves only that nothing was changed by accident or by someone who did not know to. With a
key (kept off the database host) they cannot. Each entry says which (``alg``): once a keyed entry exists, an
unkeyed one after it is reported as broken (a downgrade). Deleting the newest entries leaves a shorter,
intact chain: only a head hash recorded elsewhere (``verify`` prints it) catches that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from halguru.store.records import AuditCheck, AuditRecord
from halguru.store.sql_base import SQLBase

GENESIS = "0" * 64  # the prev_hash of the first entry
VERIFY_BATCH = 1000  # entries verify_audit reads at a time
_COLUMNS = "seq, time, actor, action, target, details, address, alg, prev_hash, hash"


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL and the store stores U+FFFD instead: hash what is stored
    return None if value is None else value.replace("\x00", "\ufffd")


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """The details as stored and hashed: sorted keys, no spaces, non-JSON values as their str()."""
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(row: Mapping[str, Any], prev_hash: str, key: bytes | None) -> str:
    """The hash an entry must carry: its fields (``details`` as its stored text) and the previous hash."""
    fields = [row["seq"], repr(float(row["time"])), row["actor"], row["action"], row["target"], row["details"],
              row["address"], row["alg"], prev_hash]
    data = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _record(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(seq=row["seq"], time=row["time"], actor=row["actor"], action=row["action"],
                       target=row["target"], details=json.loads(row["details"]), address=row["address"],
                       alg=row["alg"], prev_hash=row["prev_hash"], hash=row["hash"])


class AuditMixin(SQLBase):
    """The audit table: ``append_audit`` (one chained entry), ``list_audit``, ``verify_audit``."""

    def append_audit(self, actor: str, action: str, target: str = "", details: Mapping[str, Any] | None = None,
                     address: str | None = None, *, key: bytes | None = None) -> AuditRecord:
        """Append one entry, chained to the newest in the same transaction (see the module)."""
        row: dict[str, Any] = {"time": time.time(), "actor": _text(actor), "action": _text(action),
                               "target": _text(target), "details": canonical_details(details),
                               "address": _text(address), "alg": "hmac-sha256" if key is not None else "sha256"}
        with self._tx() as conn:
            self._lock(conn, "audit", "chain")
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            row["seq"] = last[0] + 1 if last else 1
            row["prev_hash"] = last[1] if last else GENESIS
            row["hash"] = entry_hash(row, row["prev_hash"], key)
            conn.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [row[c] for c in _COLUMNS.split(", ")])
        return _record(row)

    def list_audit(self, limit: int = 50, *, action: str | None = None, actor: str | None = None,
                   since: float | None = None, before: int | None = None,
                   until: float | None = None) -> list[AuditRecord]:
        """The newest entries first; ``action`` matches a name or a prefix ending in "." (``auth.``), ``since``
        and ``until`` bound the time (``since`` <= time < ``until``), ``before`` is the cursor (a seq: the
        entries older than it)."""
        where: list[str] = []
        params: list[Any] = []
        if action and action.endswith("."):
            where.append("substr(action, 1, ?) = ?")
            params += [len(action), action]
        elif action:
            where.append("action = ?")
            params.append(action)
        if actor:
            where.append("actor = ?")
            params.append(actor)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = f"SELECT {_COLUMNS} FROM audit{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY seq DESC"
        return [_record(r) for r in self._rows(f"{sql} LIMIT ?", [*params, limit])]

    def _audit_rows(self, batch: int) -> Iterator[dict[str, Any]]:
        """Every entry in seq order, read ``batch`` at a time (memory stays flat on a long log)."""
        after = 0
        while True:
            rows = self._rows(f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", [after, batch])
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["seq"]

    def verify_audit(self, *, key: bytes | None = None, batch: int = VERIFY_BATCH) -> AuditCheck:
        """Walk the chain from the first entry: ok, or the first broken entry's seq and why (``gap``: it is
        missing; ``prev``: it does not point at the entry before it; ``hash``: its content changed;
        ``key``: it is keyed and no key was given, or unkeyed after a keyed one)."""
        expected, prev, keyed, head = 1, GENESIS, False, GENESIS
        for row in self._audit_rows(batch):
            broken = _check(row, expected, prev, key, keyed)
            if broken is not None:
                return AuditCheck(ok=False, entries=expected - 1, seq=broken[0], reason=broken[1], head=head)
            keyed = keyed or row["alg"] != "sha256"
            expected, prev, head = row["seq"] + 1, row["hash"], row["hash"]
        return AuditCheck(ok=True, entries=expected - 1, seq=None, reason=None, head=head)


def _check(row: Mapping[str, Any], expected: int, prev: str, key: bytes | None,
           keyed: bool) -> tuple[int, str] | None:
    """Why this entry breaks the chain (its seq and a reason), or None."""
    if row["seq"] != expected:
        return expected, f"gap: entry {expected} is missing (the next stored is {row['seq']})"
    if row["prev_hash"] != prev:
        return expected, "prev mismatch: it does not point at the entry before it (one was changed or removed)"
    if row["alg"] == "sha256" and keyed:
        return expected, "key: an unkeyed entry after keyed ones"
    if row["alg"] != "sha256" and key is None:
        return expected, "key: a keyed entry (HMAC) and no HALGURU_AUDIT_KEY to check it"
    if not hmac.compare_digest(entry_hash(row, prev, key if row["alg"] != "sha256" else None), row["hash"]):
        return expected, "hash mismatch: its content is not what was written"
    return None
