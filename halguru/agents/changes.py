"""Which files of an agent project changed on disk: `halguru chat` loads the agent again before a message when
one did (`halguru dev` watches the same files with watchfiles)."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from halguru.agents.loader import Agent

FileState = dict[str, tuple[int, int]]  # path -> (mtime in ns, size)


def edited_file(path: str) -> bool:
    """Whether a change of ``path`` is an edit of the project (not an editor's swap or backup file, a cache)."""
    name = Path(path).name
    return not (name.startswith(".") or "__pycache__" in path or name.endswith((".pyc", ".swp", "~")))


def project_state(agent: Agent) -> FileState:
    """The files of the agent's project and of the agents it runs (a team's members, a workflow's step agents).
    Its knowledge folders are left out: a retrieval brings their bases up to date itself, and a folder of
    thousands of documents would be read at every message."""
    state: FileState = {}
    for involved in agent.involved():
        if involved.path is None:
            continue
        knowledge = {os.path.normpath(_entry_path(involved.path, entry)) for entry in involved.spec.knowledge}
        for root, dirs, files in os.walk(involved.path):
            dirs[:] = [d for d in dirs if edited_file(d) and os.path.normpath(os.path.join(root, d)) not in knowledge]
            for name in files:
                path = os.path.join(root, name)
                if edited_file(path):
                    with suppress(OSError):  # gone meanwhile: the next look sees it gone
                        stat = os.stat(path)
                        state[path] = (stat.st_mtime_ns, stat.st_size)
    return state


def changed_files(before: FileState, after: FileState) -> list[str]:
    """The files edited, added or removed between two states, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def _entry_path(folder: Path, entry: str) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else folder / path
