"""An organ of the bundle's class registry as a Slicer segment: name, colour and terminology.

The SNOMED CT codes come from ``configs/classes.json`` (``ciss_engine.registry``), so Segment
Editor, DICOM SEG and RTSTRUCT exports carry the same coded concepts the engine trained on.
Slicer serializes the terminology itself (``SerializeTerminologyEntry``), so the tag stays in the
format of the Slicer version that runs.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import slicer

from ciss_engine.registry import NAME_PATTERN, Code, OrganClass

from .errors import InputError

if TYPE_CHECKING:
    from slicer import vtkSegment

# The context Segment Editor opens by default; it lists the abdominal organs of the catalog.
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"


def _set_code(target, code: Code) -> None:
    target.SetCodingSchemeDesignator(code.scheme)
    target.SetCodeValue(code.code)
    target.SetCodeMeaning(code.meaning)


def terminology_entry(organ: OrganClass) -> str:
    """Slicer's serialized terminology of ``organ`` (category, type, optional laterality modifier)."""
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(TERMINOLOGY_CONTEXT)
    _set_code(entry.GetCategoryObject(), organ.category)
    _set_code(entry.GetTypeObject(), organ.type)
    entry.GetTypeObject().SetRecommendedDisplayRGBValue(*organ.rgb)
    if organ.modifier is not None:
        _set_code(entry.GetTypeModifierObject(), organ.modifier)
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)


def rgb_to_color(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """0-255 RGB (classes.json) → 0-1 RGB (vtkSegment)."""
    return tuple(channel / 255.0 for channel in rgb)  # type: ignore[return-value]


def color_to_rgb(color: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(round(channel * 255.0)) for channel in color)  # type: ignore[return-value]


def apply_organ(segment: vtkSegment, organ: OrganClass) -> None:
    """Give ``segment`` the organ's name (the registry key), colour and terminology."""
    segment.SetName(organ.name)
    segment.SetColor(*rgb_to_color(organ.rgb))
    segment.SetTerminology(terminology_entry(organ))


def organ_name_or_raise(text: str) -> str:
    """A typed organ name as a registry key: ``"Left adrenal"`` → ``"left_adrenal"``.

    >>> organ_name_or_raise(" Left adrenal ")
    'left_adrenal'
    """
    name = re.sub(r"[\s\-]+", "_", text.strip().lower())
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"invalid organ name {text!r}",
            "use letters, digits, spaces or underscores, starting with a letter (e.g. left adrenal)",
        )
    return name
