"""The store: every table (conversations, runs and their events, checkpoints, approvals, API keys, jobs),
behind one typed interface (``halguru.store.base.Store``); SQLite by default, PostgreSQL when
``HALGURU_DATABASE_URL`` is set (``open_store`` picks; ``halguru.store.postgres`` is imported only then)."""

from halguru.store.base import Store, TraceStore
from halguru.store.records import (
           ApiKeyRecord,
           ApprovalRecord,
           CheckpointRecord,
           ConversationRecord,
           RunListRecord,
           RunRecord,
)
from halguru.store.sqlite import SQLiteStore, open_store

__all__ = ["ApiKeyRecord", "ApprovalRecord", "CheckpointRecord", "ConversationRecord", "RunListRecord", "RunRecord",
           "SQLiteStore", "Store", "TraceStore", "open_store"]
