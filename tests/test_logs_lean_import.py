"""`halguru logs` lists runs without importing the event and message models (pydantic classes that cost
tens of milliseconds of every listing's start-up): the store reads rows, and builds those only when asked."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from halguru.cli.app import main
sys.argv = ["halguru", "logs"]
try:
    main()
except SystemExit:
    pass
print("loaded:", sorted(m for m in ("halguru.agents.events", "halguru.models.base") if m in sys.modules))
"""


def test_listing_runs_does_not_import_the_event_models(subprocess_env) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=subprocess_env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "loaded: []", out.stdout
