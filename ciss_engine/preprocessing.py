"""Moving volumes between the input's own grid and the network's grid (RAS, bundle spacing, intensities).

MONAI transforms do the work on MetaTensors that carry the affine; predictions go back with
``ResampleToMatch`` onto a reference of the input's exact shape and affine, so an output always
lands on the input's own grid whatever its orientation (LAS, LPS, oblique).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResampleToMatch, ScaleIntensityRange, Spacing

from . import nnunet_resampling
from .preprocessing_options import CHOICES, DEFAULT_MIRRORING_AXES, DEFAULT_OVERLAP, IntensityStep

# The settings only imported models change (preprocessing_options.py), with the values `ciss train` uses.
OPTION_DEFAULTS: dict[str, Any] = {
    **{name: allowed[0] for name, allowed in CHOICES.items()}, "window_overlap": DEFAULT_OVERLAP, "intensity_before_resampling": False,
    "window_mirroring_axes": DEFAULT_MIRRORING_AXES,
}


# Abdominal soft-tissue window, as in MONAI's BTCV recipes; one unit of a model trained here spans its 425 HU.
DEFAULT_HU_WINDOW = (-175.0, 250.0)
ENGINE_HU_PER_UNIT = DEFAULT_HU_WINDOW[1] - DEFAULT_HU_WINDOW[0]


@dataclasses.dataclass(frozen=True)
class ModelIntensities:
    """What one unit of the network's input is, so that augmentation given in Hounsfield units means the same for every
    model: ``hu_per_unit`` (425 for the engine's window; None where the normalisation is per image, whose scale
    depends on the CT) and ``bounds``, the interval the normalisation puts intensities in ([0, 1] for a window; None
    where it fixes none)."""

    hu_per_unit: float | None
    bounds: tuple[float, float] | None


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """Stored in the bundle (``ciss.preprocessing``); the same for training and inference.

    Intensities: ``hu_window`` scaled to [0, 1] and clipped, or, for an imported model, its own ``intensity``
    steps (then ``hu_window`` is None and not written, so an engine that predates the steps refuses the
    bundle instead of feeding the model intensities it was not trained on).
    """

    spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0)
    hu_window: tuple[float, float] | None = DEFAULT_HU_WINDOW
    patch_size: tuple[int, int, int] = (64, 64, 64)
    # Imported models only: to_json writes these only when they differ from OPTION_DEFAULTS, so bundles
    # trained here read and write as before.
    intensity: tuple[IntensityStep, ...] = ()
    intensity_before_resampling: bool = False
    image_padding: str = CHOICES["image_padding"][0]
    window_overlap: float = DEFAULT_OVERLAP
    window_blend: str = CHOICES["window_blend"][0]
    window_padding: str = CHOICES["window_padding"][0]
    window_mirroring_axes: tuple[int, ...] = DEFAULT_MIRRORING_AXES
    resampling: str = CHOICES["resampling"][0]

    def __post_init__(self) -> None:
        if (self.hu_window is None) == (not self.intensity):
            raise ValueError("give either hu_window or intensity steps, not both or neither")

    def model_intensities(self) -> ModelIntensities:
        """How the network's input relates to Hounsfield units (ModelIntensities)."""
        if self.hu_window is not None:
            low, high = self.hu_window
            return ModelIntensities(hu_per_unit=high - low, bounds=(0.0, 1.0))
        bounds: tuple[float, float] | None = None  # Hounsfield units: unbounded
        hu_per_unit: float | None = 1.0
        for step in self.intensity:
            bounds = step.bounds_after(bounds)
            scale = step.input_per_output_unit()
            hu_per_unit = None if hu_per_unit is None or scale is None else hu_per_unit * scale
        return ModelIntensities(hu_per_unit=hu_per_unit, bounds=bounds)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"spacing_mm": list(self.spacing_mm)}
        if self.hu_window is not None:
            data["hu_window"] = list(self.hu_window)
        data |= {"patch_size": list(self.patch_size), "orientation": "RAS"}
        if self.intensity:
            data["intensity"] = [step.to_json() for step in self.intensity]
        options = {name: getattr(self, name) for name, default in OPTION_DEFAULTS.items() if getattr(self, name) != default}
        return data | {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreprocessingConfig:
        window = data.get("hu_window")
        return cls(
            spacing_mm=tuple(float(v) for v in data["spacing_mm"]),  # type: ignore[arg-type]
            hu_window=None if window is None else tuple(float(v) for v in window),  # type: ignore[arg-type]
            patch_size=tuple(int(v) for v in data["patch_size"]),  # type: ignore[arg-type]
            intensity=tuple(IntensityStep.from_json(step) for step in data.get("intensity", ())),
            **{name: _option(data.get(name, default), default) for name, default in OPTION_DEFAULTS.items()},
        )


def _option(value: Any, default: Any) -> Any:
    """A recorded option as the type of its default (JSON lists become tuples)."""
    return tuple(int(v) for v in value) if isinstance(default, tuple) else type(default)(value)


def as_meta_tensor(image: nib.Nifti1Image, data: np.ndarray | None = None) -> MetaTensor:
    """A channel-first MetaTensor of ``image`` (or of ``data`` on its grid)."""
    array = np.asarray(image.dataobj if data is None else data)
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(array))[None], affine=torch.as_tensor(image.affine, dtype=torch.float64))


def _to_ras(tensor: MetaTensor) -> MetaTensor:
    return Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(tensor)


def _spacing(affine: torch.Tensor | np.ndarray) -> tuple[float, float, float]:
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    return tuple(float(v) for v in np.linalg.norm(matrix, axis=0))  # type: ignore[return-value]


def _nnunet_resized(tensor: MetaTensor, config: PreprocessingConfig, order: int) -> MetaTensor:
    """A RAS tensor resized to the spacing as nnU-Net resizes (nnunet_resampling.py), on the grid it lands on."""
    current = _spacing(tensor.affine)
    shape = nnunet_resampling.new_shape(tensor.shape[1:], current, config.spacing_mm)
    array = nnunet_resampling.resample(np.asarray(tensor[0]), shape, current, config.spacing_mm, order)
    affine = nnunet_resampling.resized_affine(np.asarray(tensor.affine), tuple(tensor.shape[1:]), shape)
    return MetaTensor(torch.as_tensor(array, dtype=torch.float32)[None], affine=torch.as_tensor(affine, dtype=torch.float64))


def _to_network_grid(tensor: MetaTensor, config: PreprocessingConfig, mode: str) -> MetaTensor:
    tensor = _to_ras(tensor)
    if config.resampling == "nnunet":
        return _nnunet_resized(tensor, config, 0 if mode == "nearest" else 3)
    return Spacing(pixdim=config.spacing_mm, mode=mode, padding_mode="border" if mode == "nearest" else config.image_padding)(tensor)


def image_to_network(image: nib.Nifti1Image, config: PreprocessingConfig, data: np.ndarray | None = None) -> MetaTensor:
    """CT → (1, X, Y, Z) float32 on the network grid (in [0, 1] for a HU window), affine kept. ``data``: the CT's
    voxels already read (``np.asarray(image.dataobj)``), so a caller that needs them too reads the file once."""
    def resample(tensor: MetaTensor) -> MetaTensor:
        return _to_network_grid(tensor, config, "bilinear")

    if config.hu_window is not None:
        low, high = config.hu_window
        steps = [resample, ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
    else:  # an imported model's own normalisation, in the order it was trained with
        intensity = [step.transform() for step in config.intensity]
        steps = [*intensity, resample] if config.intensity_before_resampling else [resample, *intensity]
    tensor = as_meta_tensor(image, data).float()
    for step in steps:
        tensor = step(tensor)
    return tensor


def label_to_network(label: nib.Nifti1Image, data: np.ndarray, config: PreprocessingConfig) -> MetaTensor:
    """Label map → (1, X, Y, Z) uint8 on the network grid (nearest neighbour)."""
    tensor = as_meta_tensor(label, data).float()
    return _to_network_grid(tensor, config, "nearest").to(torch.uint8)


def label_from_logits_nnunet(logits: torch.Tensor, grid: MetaTensor, reference: nib.Nifti1Image) -> np.ndarray:
    """nnU-Net's way back: each class's logits (C, X, Y, Z on ``grid``) resized linearly to the input's RAS grid,
    then the argmax there (class by class, so memory stays three volumes of the input's size); uint8 on
    ``reference``'s own grid."""
    ras = _to_ras(MetaTensor(torch.zeros((1, *reference.shape[:3]), dtype=torch.uint8), affine=torch.as_tensor(reference.affine, dtype=torch.float64)))
    shape, current, target = tuple(ras.shape[1:]), _spacing(grid.affine), _spacing(ras.affine)
    best = np.full(shape, -np.inf)
    label = np.zeros(shape, dtype=np.uint8)
    for channel in range(logits.shape[0]):
        values = nnunet_resampling.resample(np.asarray(logits[channel], dtype=np.float64), shape, current, target, order=1)
        better = values > best
        best[better], label[better] = values[better], channel
    ras.set_array(torch.as_tensor(label)[None])
    return label_to_input_grid(ras, reference)


def label_to_input_grid(label: MetaTensor, reference: nib.Nifti1Image) -> np.ndarray:
    """A network-grid label map (1, X, Y, Z) → uint8 array on ``reference``'s exact grid."""
    target = MetaTensor(torch.zeros((1, *reference.shape[:3])), affine=torch.as_tensor(reference.affine, dtype=torch.float64))
    resampled = ResampleToMatch(mode="nearest", padding_mode="zeros")(label.float(), target)
    return np.asarray(resampled[0].round().to(torch.uint8).cpu())
