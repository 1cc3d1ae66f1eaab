"""A small team on disk: a router with two sibling agents, in the layout users write."""

from __future__ import annotations

from pathlib import Path

import pytest


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def team(tmp_path: Path) -> Path:
    root = write(tmp_path / "desk", """\
name: desk
description: Routes each request.
model: scripted
instructions: Route the request.
team:
  handoffs: [agents/billing, agents/tech]
  specialists: [agents/tech]
  max_handoffs: 4
  max_steps: 8
""")
    write(root / "agents/billing", "name: billing\ndescription: Invoices and refunds.\nmodel: scripted\n"
          "tools: [calculator]\n")
    write(root / "agents/tech", "name: tech\ndescription: Technical problems.\nmodel: scripted\n")
    return root
