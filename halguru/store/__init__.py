"""The trace store: conversations, runs and their events, in SQLite (sqlite-utils)."""

from halguru.store.sqlite import SQLiteStore, open_store

__all__ = ["SQLiteStore", "open_store"]
