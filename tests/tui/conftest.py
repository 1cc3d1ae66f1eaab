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


@pytest.fixture
def mailer_agent(write_agent, tmp_path: Path) -> Path:
    """An agent whose one call (send_email to ann) waits for approval, then answers "Sent it."."""
    (tmp_path / "script.yaml").write_text("- tool_calls: [{name: send_email, arguments: {to: ann@example.com}}]\n"
                                          "- Sent it.\n")
    return write_agent(f"name: mailer\nmodel: scripted:{tmp_path / 'script.yaml'}\ntools: [send_email]\n"
                       "approvals: [send_email]\n",
                       "from halguru import tool\n\n@tool\ndef send_email(to: str) -> str:\n"
                       "    'Send an email.'\n    return 'sent'\n", name="mailer")
