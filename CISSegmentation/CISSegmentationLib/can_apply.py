"""Which of the panel's actions can run now, and what is missing for each one.

Slicer's scripted-module template disables Apply until its inputs are set and says why in the tooltip; the
panel does the same for every action from one snapshot of its state, so a greyed-out button always tells
the user what to do next. Plain data: tested without Qt.
"""
from __future__ import annotations

import dataclasses
import enum


class Action(enum.Enum):
    INSTALL = "install"
    SEGMENT = "segment"
    ADD_ORGAN = "add_organ"
    CORRECT = "correct"
    LEARN = "learn"
    ADAPT = "adapt"
    ROLLBACK = "rollback"
    EXPORT = "export"


@dataclasses.dataclass(frozen=True)
class PanelState:
    """What the panel knows when its buttons are updated."""

    busy: bool  # an engine job is running
    engine_ready: bool
    bundle_loaded: bool
    ct_chosen: bool
    new_organs: int  # organs added (and painted or to be painted) but not learned yet
    result_on_ct: bool  # a segmentation result exists on the chosen CT
    versions: int  # versions of the loaded bundle


def missing_for(action: Action, state: PanelState) -> str | None:
    """What the user must do before ``action`` can run; None when it can run now."""
    if state.busy:
        return "wait for the running job to finish, or cancel it"
    if action is Action.INSTALL:
        return None
    needs = {
        Action.SEGMENT: ("engine", "bundle", "ct"),
        Action.ADD_ORGAN: ("bundle", "ct"),
        Action.CORRECT: ("bundle", "ct", "result"),
        Action.LEARN: ("engine", "bundle", "ct", "new_organ"),
        Action.ADAPT: ("engine", "bundle"),  # which segmentations hold the organs is checked on click, with what to do
        Action.ROLLBACK: ("engine", "bundle", "versions"),
        Action.EXPORT: ("ct", "result"),
    }[action]
    checks = {
        "engine": (state.engine_ready, "install the engine first (Engine section)"),
        "bundle": (state.bundle_loaded, "choose a bundle folder under Bundle"),
        "ct": (state.ct_chosen, "choose a CT under Input CT"),
        "new_organ": (state.new_organs > 0, "add a new organ and paint it on at least one CT (Add new organ)"),
        "versions": (state.versions > 1, "the bundle has only one version: there is nothing to roll back to"),
        "result": (state.result_on_ct, "segment the chosen CT first (Segment all organs)"),
    }
    for need in needs:
        satisfied, what_to_do = checks[need]
        if not satisfied:
            return what_to_do
    return None
