"""The store: every table (conversations, runs and their events, checkpoints, approvals, API keys), behind
one typed interface (``halguru.store.base.Store``); SQLite by default."""

from halguru.store.base import (
    ApiKeyRecord,
    ApprovalRecord,
    CheckpointRecord,
    ConversationRecord,
    RunListRecord,
    RunRecord,
    Store,
    TraceStore,
)
from halguru.store.sqlite import SQLiteStore, open_store

__all__ = ["ApiKeyRecord", "ApprovalRecord", "CheckpointRecord", "ConversationRecord", "RunListRecord", "RunRecord",
           "SQLiteStore", "Store", "TraceStore", "open_store"]
