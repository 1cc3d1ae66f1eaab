"""Orchestration: agent teams (handoffs, specialists called as tools) and their guards.

The runtime (``halguru.agents.runtime.run``) stays the only entry point; it delegates the team-specific
decisions here, and only when an agent has a ``team:`` section, so plain runs do no extra work.
"""
