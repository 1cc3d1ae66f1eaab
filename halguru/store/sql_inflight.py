"""Each serve process's requests in flight per client, shared through the store so that ``max_in_flight`` holds
across replicas (and ``--workers N`` processes), not once per process.

Admission stays in memory (``halguru_server.inflight``: no store call on a request's path); once a second each
process writes its clients' counts here and reads the other processes' sums (``share_in_flight``: one small
transaction). A process's rows carry an expiry a few seconds ahead, renewed by each share, so those of a process
that was killed stop counting once it passes, and nothing needs to clean up after it. A burst inside one second
can still pass the cap on each process; what the cap is for, requests held long (a slow list, a flood waiting
on threads), is seen by every process within a second.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from halguru.store.sql_base import SQLBase


class InFlightMixin(SQLBase):
    def share_in_flight(self, process: str, counts: Mapping[str, int], ttl: float) -> dict[str, int]:
        """Store ``process``'s ``counts`` (client: requests in flight) until ``ttl`` seconds from now, replacing
        what it stored before; the other live processes' counts, summed by client."""
        now = time.time()
        with self._tx(relaxed=True) as conn:
            conn.execute("DELETE FROM in_flight WHERE process = ? OR expires < ?", (process, now))
            conn.executemany("INSERT INTO in_flight (process, client, n, expires) VALUES (?, ?, ?, ?)",
                             [(process, client, n, now + ttl) for client, n in counts.items() if n > 0])
            rows = conn.execute("SELECT client, sum(n) AS n FROM in_flight WHERE process <> ? GROUP BY client",
                                (process,)).fetchall()
        return {row["client"]: int(row["n"]) for row in rows}
