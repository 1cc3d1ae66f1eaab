"""halguru: build, debug and operate AI agents, locally first.

The public Python API is re-exported lazily so that ``import halguru`` (and the
CLI's ``--help``) stays fast: nothing heavy is imported until it is used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# ONNX Runtime (the embedders' layers) collects telemetry on Linux too since 1.2x: a device id and a queue of events
# for Microsoft under ~/.cache/Microsoft, and a warning in the log where that cannot be written (a read-only image).
# Off, unless the user sets the variable; read once, when onnxruntime is imported, so here, before any import of it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "halguru.agents.loader",
    "load_agent": "halguru.agents.loader",
    "AgentSpec": "halguru.agents.spec",
    "run": "halguru.agents.runtime",
    "run_sync": "halguru.agents.runtime",
    "RunResult": "halguru.agents.runtime",
    "tool": "halguru.tools.decorator",
    "Tool": "halguru.tools.decorator",
    "HalguruError": "halguru.errors",
}

# Spelt out: type checkers read a literal __all__ only, and without it `from halguru import run` failed
# mypy --strict (the names were implicit re-exports).
__all__ = ["Agent", "AgentSpec", "HalguruError", "RunResult", "Tool", "__version__", "load_agent", "run",
           "run_sync", "tool"]

if TYPE_CHECKING:  # pragma: no cover
    from halguru.agents.loader import Agent, load_agent
    from halguru.agents.runtime import RunResult, run, run_sync
    from halguru.agents.spec import AgentSpec
    from halguru.errors import HalguruError
    from halguru.tools.decorator import Tool, tool


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'halguru' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
