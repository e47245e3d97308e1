"""The panel's can-apply check (CISSegmentationLib/can_apply.py): each action is enabled exactly when its
inputs are there, and a disabled one says what is missing."""
import dataclasses

import pytest
from CISSegmentationLib.can_apply import Action, PanelState, missing_for

READY = PanelState(busy=False, engine_ready=True, bundle_loaded=True, ct_chosen=True, new_organs=1, result_on_ct=True, versions=2)


def test_everything_can_run_when_every_input_is_there():
    assert {action: missing_for(action, READY) for action in Action} == {action: None for action in Action}


def test_a_running_job_disables_every_action_and_says_to_wait():
    busy = dataclasses.replace(READY, busy=True)
    assert all("wait for the running job" in missing_for(action, busy) for action in Action)


@pytest.mark.parametrize("change, blocked, hint", [
    ({"engine_ready": False}, {Action.SEGMENT, Action.LEARN, Action.ADAPT, Action.ROLLBACK}, "install the engine"),
    ({"bundle_loaded": False}, {Action.SEGMENT, Action.ADD_ORGAN, Action.CORRECT, Action.LEARN, Action.ADAPT, Action.ROLLBACK}, "choose a bundle"),
    ({"ct_chosen": False}, {Action.SEGMENT, Action.ADD_ORGAN, Action.CORRECT, Action.LEARN, Action.EXPORT}, "choose a CT"),
    ({"new_organs": 0}, {Action.LEARN}, "add a new organ"),
    ({"versions": 1}, {Action.ROLLBACK}, "nothing to roll back to"),
    ({"result_on_ct": False}, {Action.CORRECT, Action.EXPORT}, "segment the chosen CT first"),
])
def test_each_missing_input_blocks_exactly_the_actions_that_need_it(change, blocked, hint):
    state = dataclasses.replace(READY, **change)
    missing = {action: missing_for(action, state) for action in Action}
    assert {action for action, why in missing.items() if why is not None} == blocked
    assert all(hint in missing[action] for action in blocked)


def test_the_first_missing_input_is_named_first():
    nothing = PanelState(busy=False, engine_ready=False, bundle_loaded=False, ct_chosen=False, new_organs=0, result_on_ct=False, versions=0)
    assert "install the engine" in missing_for(Action.LEARN, nothing)
    assert "choose a bundle" in missing_for(Action.ADD_ORGAN, nothing)
    assert missing_for(Action.INSTALL, nothing) is None
