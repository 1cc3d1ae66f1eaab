"""Tools: the ``@tool`` decorator, tool lookup and execution, and built-in tools."""

from halguru.tools.decorator import Tool, tool

__all__ = ["Tool", "tool"]
