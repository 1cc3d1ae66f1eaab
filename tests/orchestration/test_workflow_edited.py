"""A workflow edited between its pause (or checkpoint) and what continues it."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import run_sync
from halguru.errors import HalguruError
from halguru.orchestration.approvals import approve, list_pending, reject

TOOLS = '''
from halguru import tool

@tool
def charge(amount: int) -> str:
    "Charge the card."
    return f"charged {amount}"

@tool
def refund(amount: int) -> str:
    "Refund the card."
    return f"refunded {amount}"
'''

STEPS = """\
  steps:
    - {id: total, condition: "20 * 2"}
    - {id: pay, tool: charge, args: {amount: "{{ steps.total.output }}"}}
    - {id: done, condition: "'done'", needs: [total]}
"""


def paused_flow(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: flow\ntools: [charge, refund]\napprovals: [charge, refund]\n"
                                       "workflow:\n" + STEPS)
    (folder / "tools.py").write_text(TOOLS)
    paused = run_sync(folder, "bill me")
    assert paused.status == "paused"
    return folder, paused.run_id


@pytest.mark.parametrize(("edit", "now"), [
    (lambda text: text.replace('    - {id: pay, tool: charge, args: {amount: "{{ steps.total.output }}"}}\n', ""),
     "which its agent.yaml no longer has"),
    (lambda text: text.replace("id: pay, tool: charge", "id: pay, tool: refund"), "which now calls refund"),
])
def test_approving_a_step_the_workflow_no_longer_has_is_refused_and_loses_nothing(tmp_path: Path, edit,
                                                                                  now: str) -> None:
    """The approval was recorded and the run went on without the step: the human approved a charge that never
    happened (or a refund that was never asked), and `runs list` said approved."""
    folder, run_id = paused_flow(tmp_path)
    agent_yaml = folder / "agent.yaml"
    agent_yaml.write_text(edit(agent_yaml.read_text()))
    with pytest.raises(HalguruError) as refused:
        approve(run_id)
    assert str(refused.value) == (
        f"run {run_id} paused at step pay (charge), {now}: put the step back to approve it, or reject it "
        f"(`halguru runs reject {run_id}`)")
    assert [p["run_id"] for p in list_pending()] == [run_id]  # still waiting: nothing was used up
    rejected = reject(run_id, "changed the flow")  # a reject still goes on
    assert rejected.status in ("ok", "failed")
    assert list_pending() == []
