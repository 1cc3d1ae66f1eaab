"""Tools: the ``@tool`` decorator, tool lookup and execution, and built-in tools.

``Tool`` and ``tool`` are re-exported lazily: plugin modules under this package
load on every CLI start and must not pull in pydantic for ``--help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from halguru.tools.decorator import Tool, tool

__all__ = ["Tool", "tool"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from halguru.tools import decorator

        return getattr(decorator, name)
    raise AttributeError(f"module 'halguru.tools' has no attribute {name!r}")
