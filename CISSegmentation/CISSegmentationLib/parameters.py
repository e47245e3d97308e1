"""The panel's choices as one typed dataclass (no Qt, no MRML), shared by desktop Slicer and the studio.

In desktop Slicer, ``CISSegmentation.py`` subclasses it with the node references and wraps it with
``parameterNodeWrapper``, so values are stored typed in the parameter node (never "true"/"false"
strings). The studio keeps it as its state.
"""
from __future__ import annotations

import dataclasses

from ciss_engine.api.presets import DEFAULT_PRESET, PRESETS
from ciss_engine.device import DEVICE_CHOICES

from .errors import InputError


@dataclasses.dataclass
class CissParameters:
    """What the user chose in the panel.

    >>> CissParameters(bundle_path="/data/bundle", device="cpu").check_or_raise()
    """

    bundle_path: str = ""
    bundle_version: str = ""  # "" = the bundle's current version
    device: str = "auto"
    preset: str = DEFAULT_PRESET
    new_organ_name: str = ""
    accept_forgetting: bool = False
    show_3d: bool = True

    def check_or_raise(self) -> None:
        """Refuse values the engine would refuse, before a process starts."""
        if self.device not in DEVICE_CHOICES:
            raise InputError(f"unknown device {self.device!r}", f"choose one of {', '.join(DEVICE_CHOICES)}")
        if self.preset not in PRESETS:
            raise InputError(f"unknown preset {self.preset!r}", f"choose one of {', '.join(PRESETS)}")
