"""`halguru serve agents agents/helper` (a folder of projects, and one of them again) was refused: "two agents are
named 'helper' (agents/helper and agents/helper); rename one", for one project whose name needs no change."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru.errors import HalguruError


def test_a_project_named_twice_is_served_once_and_two_of_one_name_are_refused(write_agent) -> None:
    from halguru_server.agents import load_agents

    helper = write_agent("name: helper\nmodel: scripted\n", name="agents/helper")
    assert list(load_agents([helper.parent, helper, Path(f"{helper}/")], "public")) == ["helper"]
    twin = write_agent("name: helper\nmodel: scripted\n", name="other/twin")
    with pytest.raises(HalguruError, match=r"two agents are named 'helper'.*rename one"):
        load_agents([helper, twin], "public")
