"""Each test with its own HALGURU_HOME (the `halguru_home` fixture of halguru's pytest plugin): the runs,
approvals and knowledge bases the tests make stay out of the ones `halguru logs` and `halguru kb` show you."""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_home(halguru_home: Path) -> Path:
    return halguru_home
