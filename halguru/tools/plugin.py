"""Built-in tools, registered through the same hook as third-party plugins."""

from __future__ import annotations

from typing import Any

from halguru.plugins.hookspecs import hookimpl


@hookimpl
def register_tools(register: Any) -> None:
    from halguru.tools.builtin import BUILTIN_TOOLS

    for t in BUILTIN_TOOLS:
        register(t)
