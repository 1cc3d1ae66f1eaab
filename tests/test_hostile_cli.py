"""A hostile user and a broken machine against the CLI: each is one line naming what is wrong, exit 1, no
traceback, nothing half-written."""

from __future__ import annotations

AGENT = "name: a\nmodel: scripted\n"


def test_yaml_nested_thousands_deep_is_one_line(write_agent, cli_error):
    # PyYAML recurses once per level: a RecursionError traceback, for agent.yaml and tests files alike
    folder = write_agent(AGENT + "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert cli_error("validate", str(folder)).endswith("agent.yaml: invalid YAML: nested too deeply "
                                                       "(lists or mappings thousands of levels deep)")

