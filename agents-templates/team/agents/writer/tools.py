"""The writer's tool: saving a note is a side effect, so agent.yaml lists it under approvals:."""

import re
from pathlib import Path

from halguru import tool

NOTES = Path("notes")


@tool
def save_note(title: str, text: str) -> str:
    """Save the answer as a Markdown note in ./notes (a human approves each call first)."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "note"
    NOTES.mkdir(exist_ok=True)
    path = NOTES / f"{slug}.md"
    path.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
    return f"saved {path}"
