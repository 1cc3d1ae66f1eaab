"""Conversation tests and evaluations: ``halguru test`` and ``halguru eval``."""
