"""Preprocessing settings beyond ``ciss train``'s own: those a model imported from another tool brings along.

Bundles trained here scale a HU window to [0, 1], resample with zero padding and blend overlapping patches
with a Gaussian at 50 % overlap. A model imported from a MONAI bundle (docs/import.md) keeps what it was
trained and run with: its intensity normalisation as an ordered list of steps from this allow-list (each one
MONAI transform with literal arguments), the padding of its resampling, and its sliding-window settings.
No torch or MONAI import at module level: ``bundle_schema`` checks these settings when ``ciss info`` reads a bundle.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

# op → MONAI array transform and its arguments: name → (kind, default); kinds "number", "optional_number", "flag".
INTENSITY_OPS: dict[str, tuple[str, dict[str, tuple[str, Any]]]] = {
    "scale_intensity_range": ("ScaleIntensityRange", {
        "a_min": ("number", None), "a_max": ("number", None), "b_min": ("optional_number", None),
        "b_max": ("optional_number", None), "clip": ("flag", False),
    }),
    "normalize_intensity": ("NormalizeIntensity", {"nonzero": ("flag", False), "channel_wise": ("flag", False)}),
    "scale_intensity": ("ScaleIntensity", {"minv": ("optional_number", 0.0), "maxv": ("optional_number", 1.0), "channel_wise": ("flag", False)}),
}
# Allowed values of the other settings; the first is what `ciss train` uses (and the default when not written).
CHOICES: dict[str, tuple[str, ...]] = {
    "image_padding": ("zeros", "border", "reflection"),  # grid_sample padding when the CT is resampled
    # grid: onto the spacing's grid anchored at the first voxel (linear); nnunet: nnU-Net's edge-aligned resize
    # (cubic in, linear logits back before the argmax; nnunet_resampling.py), for models imported from nnU-Net.
    "resampling": ("grid", "nnunet"),
    "window_blend": ("gaussian", "constant"),  # blending of overlapping sliding-window patches
    "window_padding": ("constant", "replicate", "reflect", "circular"),  # padding of a CT smaller than a patch
}
DEFAULT_OVERLAP = 0.5
# Test-time mirroring: network-grid axes whose flips are averaged with the plain prediction (nnU-Net's
# default for the axes a model was trained to mirror); none for bundles trained here (no mirroring augmentation).
DEFAULT_MIRRORING_AXES: tuple[int, ...] = ()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _value_problem(kind: str, value: Any) -> str | None:
    if kind == "flag":
        return None if isinstance(value, bool) else "true or false"
    if kind == "optional_number":
        return None if value is None or _is_number(value) else "a finite number or null"
    return None if _is_number(value) else "a finite number"


@dataclasses.dataclass(frozen=True)
class IntensityStep:
    """One normalisation: ``op`` from :data:`INTENSITY_OPS` and every argument it takes, defaults filled in.

    >>> IntensityStep.from_json({"op": "scale_intensity", "minv": -1.0, "maxv": 1}).to_json()
    {'op': 'scale_intensity', 'minv': -1.0, 'maxv': 1.0, 'channel_wise': False}
    """

    op: str
    arguments: tuple[tuple[str, Any], ...]

    @classmethod
    def from_json(cls, data: Any) -> IntensityStep:
        """Check and build; raises ValueError saying what is wrong (callers add the file and the fix)."""
        if not isinstance(data, dict) or data.get("op") not in INTENSITY_OPS:
            raise ValueError(f"intensity step {data!r} is not one of {', '.join(INTENSITY_OPS)}")
        _, spec = INTENSITY_OPS[data["op"]]
        unknown = sorted(set(data) - set(spec) - {"op"})
        if unknown:
            raise ValueError(f"intensity step {data['op']} takes no argument {', '.join(unknown)}")
        arguments = []
        for name, (kind, default) in spec.items():
            if name not in data and kind == "number":
                raise ValueError(f"intensity step {data['op']} needs {name}")
            value = data.get(name, default)
            problem = _value_problem(kind, value)
            if problem:
                raise ValueError(f"intensity step {data['op']}: {name} is {value!r}, not {problem}")
            arguments.append((name, float(value) if kind != "flag" and value is not None else value))
        return cls(op=data["op"], arguments=tuple(arguments))

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, **dict(self.arguments)}

    def describe(self) -> str:
        """For the model card, e.g. ``NormalizeIntensity(nonzero=True, channel_wise=False)``."""
        return f"{INTENSITY_OPS[self.op][0]}({', '.join(f'{k}={v}' for k, v in self.arguments)})"

    def input_per_output_unit(self) -> float | None:
        """How many input units (Hounsfield units for the first step) one output unit spans, for a fixed linear map;
        None for a per-image normalisation, whose scale depends on the CT."""
        a = dict(self.arguments)
        if self.op != "scale_intensity_range" or a["a_max"] == a["a_min"]:
            return None
        if a["b_min"] is None or a["b_max"] is None:
            return a["a_max"] - a["a_min"]
        return None if a["b_max"] == a["b_min"] else abs((a["a_max"] - a["a_min"]) / (a["b_max"] - a["b_min"]))

    def bounds_after(self, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        """The interval this step's output lies in, given its input's (None: unbounded, or known only from the image
        itself). A clipping range is exact; a fixed linear map carries known bounds; a per-image normalisation
        (z-score) has none, and a per-image rescale lands on its own ``minv``-``maxv``.

        >>> IntensityStep.from_json({"op": "scale_intensity_range", "a_min": -1000, "a_max": 1000, "b_min": -1, "b_max": 1}).bounds_after((-2000.0, 0.0))
        (-2.0, 0.0)
        """
        a = dict(self.arguments)
        if self.op == "scale_intensity":
            return None if a["minv"] is None or a["maxv"] is None else (min(a["minv"], a["maxv"]), max(a["minv"], a["maxv"]))
        if self.op != "scale_intensity_range" or a["b_min"] is None or a["b_max"] is None:
            return None  # normalize_intensity; a range without output bounds neither scales to nor clips at known values
        if a["clip"]:
            return (min(a["b_min"], a["b_max"]), max(a["b_min"], a["b_max"]))
        if bounds is None or a["a_max"] == a["a_min"]:
            return None

        def mapped(value: float) -> float:
            return (value - a["a_min"]) / (a["a_max"] - a["a_min"]) * (a["b_max"] - a["b_min"]) + a["b_min"]

        low, high = mapped(bounds[0]), mapped(bounds[1])
        return (min(low, high), max(low, high))

    def transform(self) -> Any:
        """The MONAI array transform that performs this step."""
        import monai.transforms

        return getattr(monai.transforms, INTENSITY_OPS[self.op][0])(**dict(self.arguments))


def options_problem(preprocessing: dict[str, Any]) -> str | None:
    """Why the optional settings of a recorded ``ciss.preprocessing`` are unusable, or None (plain JSON check)."""
    steps = preprocessing.get("intensity")
    if steps is not None:
        if not isinstance(steps, list) or not steps:
            return f"ciss.preprocessing.intensity is {steps!r}, not a non-empty list of steps"
        for step in steps:
            try:
                IntensityStep.from_json(step)
            except ValueError as error:
                return f"ciss.preprocessing.intensity: {error}"
    for name, allowed in CHOICES.items():
        if preprocessing.get(name, allowed[0]) not in allowed:
            return f"ciss.preprocessing.{name} is {preprocessing[name]!r}, not one of {', '.join(allowed)}"
    if not isinstance(preprocessing.get("intensity_before_resampling", False), bool):
        return f"ciss.preprocessing.intensity_before_resampling is {preprocessing['intensity_before_resampling']!r}, not true or false"
    axes = preprocessing.get("window_mirroring_axes", [])
    if not (isinstance(axes, list) and all(a in (0, 1, 2) and not isinstance(a, bool) for a in axes) and len(set(axes)) == len(axes)):
        return f"ciss.preprocessing.window_mirroring_axes is {axes!r}, not a list of distinct axes 0, 1, 2"
    overlap = preprocessing.get("window_overlap", DEFAULT_OVERLAP)
    if not (_is_number(overlap) and 0.0 <= overlap < 1.0):
        return f"ciss.preprocessing.window_overlap is {overlap!r}, not a fraction in [0, 1)"
    return None


def describe_intensity(preprocessing: dict[str, Any]) -> str:
    """How a recorded ``ciss.preprocessing`` brings intensities to the network, for the model card."""
    steps = preprocessing.get("intensity")
    if not steps:
        return f"window {preprocessing['hu_window']} HU scaled to [0, 1]"
    return "intensities normalised by " + " then ".join(IntensityStep.from_json(step).describe() for step in steps)
