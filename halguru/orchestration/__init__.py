"""Orchestration around the plain agent loop: teams, workflows, approvals and durable runs.

``team:`` and ``workflow:`` are agent.yaml sections this package registers (halguru.orchestration.plugin);
each loads a driver (halguru.agents.driver) that the runtime runs instead of the plain loop. The runtime
(``halguru.agents.runtime.run``) stays the only entry point, and plain runs do no orchestration work at all.
"""
