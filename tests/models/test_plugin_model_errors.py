"""A plugin's model that breaks its contract is one `Error:` line naming the model and what it did."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.feedback_plugins import install_boom, python_path


@pytest.mark.parametrize(("model", "said"), [
    ("boom", "Error: model boom failed: RuntimeError: upstream 502 from provider"),
    ("boom-chunks", "Error: model boom-chunks streamed a dict; a model's stream yields TextChunk, ToolCallChunk"),
    # its create() failed: not blamed on models.yaml nor sent to `halguru models add`, which did not make it
    ("boom-create", "Error: model 'boom-create': its provider 'boom' failed (ValueError: cannot create: missing "
                    "API key)"),
])
def test_a_plugin_model_that_raises_or_streams_the_wrong_thing_is_one_line(cli_error, write_agent, tmp_path: Path,
                                                                           model: str, said: str) -> None:
    site = install_boom(tmp_path / "site")
    line = cli_error("run", str(write_agent(f"name: b\nmodel: {model}\n")), "hi", env={"PYTHONPATH": python_path(site)})
    assert line.startswith(said), line
    assert "models add" not in line
