"""Each model entry of a plugin provider gets its own instance, even when two entries' options are equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.feedback_plugins import install_twin, load


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load(install_twin(tmp_path / "site"), monkeypatch)


def test_two_names_of_one_provider_are_two_models(twin) -> None:
    from halguru.models.registry import get_model

    assert [get_model(r).name for r in ("twin-small", "twin-large", "twin:xl")] == [
        "twin-small", "twin-large", "twin:xl"]
    assert get_model("twin-small") is get_model("twin-small")  # still one instance per model


def test_the_default_reference_shares_its_model(twin) -> None:
    from halguru.config import set_config_value
    from halguru.models.registry import get_model

    set_config_value("default_model", "twin-large")
    assert get_model("default") is get_model("twin-large")
