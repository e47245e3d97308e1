"""The desktop panel's fixed words that state engine facts (the preset budgets and which one is the default) agree with
the engine's one declaration of them (``ciss_engine/api/presets.py``): a changed default reaches the tooltip or fails here."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from slicer_logic_helpers import REPO_ROOT

from ciss_engine.api.presets import DEFAULT_PRESET, PRESETS

PANEL = REPO_ROOT / "CISSegmentation" / "Resources" / "UI" / "CISSegmentation.ui"


def _tooltip(widget_name: str) -> str:
    widget = ElementTree.parse(PANEL).getroot().find(f".//widget[@name='{widget_name}']")
    assert widget is not None, f"{PANEL.name} has no widget {widget_name}"
    return widget.findtext("property[@name='toolTip']/string") or ""


def test_the_preset_tooltip_gives_each_budget_and_the_default():
    tooltip = _tooltip("presetComboBox")
    for name, iterations in PRESETS.items():
        default = ", default" if name == DEFAULT_PRESET else ""
        assert f"{name} ({iterations} iterations{default})" in tooltip
    assert tooltip.count("default") == 1
