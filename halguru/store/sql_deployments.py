"""Published agent versions (either backend; see ``sql_base``): ``halguru publish`` stores each bundle here with
its manifest, numbered per agent, and at most one version per agent is active (none once it is unpublished). The
bundle bytes live in the database, so every replica sharing it can serve a version another replica received;
listings never read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from halguru.store.records import DeploymentRecord
from halguru.store.sql_base import SQLBase

_COLUMNS = "agent, version, sha256, manifest, published_by, created, active, activated"


def _record(row: Mapping[str, Any]) -> DeploymentRecord:
    return DeploymentRecord(agent=row["agent"], version=int(row["version"]), sha256=row["sha256"],
                            manifest=json.loads(row["manifest"]), published_by=row["published_by"],
                            created=row["created"], active=bool(row["active"]), activated=row["activated"])


class DeploymentsMixin(SQLBase):
    """The ``deployments`` table: one row per published version, at most one active per agent."""

    def create_deployment(self, agent: str, sha256: str, manifest: Mapping[str, Any], bundle: bytes,
                          published_by: str | None) -> DeploymentRecord:
        now = time.time()
        with self._tx() as conn:
            self._lock(conn, "deployment", agent)  # two publishes of one agent get versions n and n+1
            last = conn.execute("SELECT max(version) FROM deployments WHERE agent = ?", (agent,)).fetchone()
            version = int(last[0] or 0) + 1
            conn.execute("UPDATE deployments SET active = 0 WHERE agent = ? AND active = 1", (agent,))
            conn.execute(f"INSERT INTO deployments ({_COLUMNS}, bundle) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                         (agent, version, sha256, json.dumps(dict(manifest), sort_keys=True), published_by, now, now,
                          bundle))
        return DeploymentRecord(agent=agent, version=version, sha256=sha256, manifest=dict(manifest),
                                published_by=published_by, created=now, active=True, activated=now)

    def activate_deployment(self, agent: str, version: int) -> DeploymentRecord | None:
        with self._tx() as conn:
            self._lock(conn, "deployment", agent)
            found = conn.execute("SELECT 1 FROM deployments WHERE agent = ? AND version = ?",
                                 (agent, version)).fetchone()
            if found is None:
                return None
            conn.execute("UPDATE deployments SET active = 0 WHERE agent = ? AND active = 1 AND version <> ?",
                         (agent, version))
            conn.execute("UPDATE deployments SET active = 1, activated = ? WHERE agent = ? AND version = ? "
                         "AND active = 0", (time.time(), agent, version))
            rows = self._rows(f"SELECT {_COLUMNS} FROM deployments WHERE agent = ? AND version = ?",
                              (agent, version))
        return _record(rows[0])

    def deactivate_deployment(self, agent: str) -> DeploymentRecord | None:
        with self._tx() as conn:
            self._lock(conn, "deployment", agent)  # a publish or rollback beside it comes before or after
            rows = self._rows(f"SELECT {_COLUMNS} FROM deployments WHERE agent = ? AND active = 1", (agent,))
            conn.execute("UPDATE deployments SET active = 0 WHERE agent = ? AND active = 1", (agent,))
        return DeploymentRecord(**{**_record(rows[0]), "active": False}) if rows else None

    def list_deployments(self, agent: str | None = None) -> list[DeploymentRecord]:
        where, params = ("WHERE agent = ?", (agent,)) if agent else ("", ())
        rows = self._rows(f"SELECT {_COLUMNS} FROM deployments {where} ORDER BY agent, version DESC", params)
        return [_record(r) for r in rows]

    def active_deployments(self) -> dict[str, tuple[int, str]]:
        rows = self._rows("SELECT agent, version, sha256 FROM deployments WHERE active = 1")
        return {r["agent"]: (int(r["version"]), r["sha256"]) for r in rows}

    def deployment_bundle(self, agent: str, version: int) -> bytes | None:
        rows = self._rows("SELECT bundle FROM deployments WHERE agent = ? AND version = ?", (agent, version))
        return bytes(rows[0]["bundle"]) if rows else None

    def delete_deployments(self, agent: str, versions: Sequence[int]) -> list[int]:
        with self._tx() as conn:
            self._lock(conn, "deployment", agent)  # a rollback to one of them waits, then finds it gone
            gone = [v for v in versions if conn.execute(
                "DELETE FROM deployments WHERE agent = ? AND version = ? AND active = 0", (agent, v)).rowcount]
        return gone
