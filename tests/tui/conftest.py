"""Fixtures for the debugger tests: a small calculator agent on the scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest

TOOLS = '''
from halguru.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
'''


@pytest.fixture
def calc_agent(write_agent) -> Path:
    return write_agent("name: calc\nmodel: scripted\ninstructions: You add numbers.\ntools: [add]\n", TOOLS,
                       name="calc")
