"""Agents: the agent.yaml spec, loading projects, and the runtime loop."""
