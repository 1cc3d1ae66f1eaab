"""Orchestration's agent.yaml sections, registered like any plugin's: ``team:`` and ``workflow:``."""

from __future__ import annotations

from typing import Any

from halguru.plugins.hookspecs import hookimpl


@hookimpl
def register_sections(register: Any) -> None:
    from halguru.orchestration.team_driver import load_team_driver
    from halguru.orchestration.workflow_driver import load_workflow_driver

    register("team", load_team_driver)
    register("workflow", load_workflow_driver)
