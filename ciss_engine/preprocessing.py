"""Moving volumes between the input's own grid and the network's grid (RAS, bundle spacing, HU window).

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


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """Stored in the bundle (``ciss.preprocessing``); the same for training and inference."""

    spacing_mm: tuple[float, float, float] = (3.0, 3.0, 3.0)
    # Abdominal soft-tissue window, as in MONAI's BTCV recipes.
    hu_window: tuple[float, float] = (-175.0, 250.0)
    patch_size: tuple[int, int, int] = (64, 64, 64)

    def to_json(self) -> dict[str, Any]:
        return {"spacing_mm": list(self.spacing_mm), "hu_window": list(self.hu_window), "patch_size": list(self.patch_size), "orientation": "RAS"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreprocessingConfig:
        return cls(
            spacing_mm=tuple(float(v) for v in data["spacing_mm"]),  # type: ignore[arg-type]
            hu_window=tuple(float(v) for v in data["hu_window"]),  # type: ignore[arg-type]
            patch_size=tuple(int(v) for v in data["patch_size"]),  # type: ignore[arg-type]
        )


def as_meta_tensor(image: nib.Nifti1Image, data: np.ndarray | None = None) -> MetaTensor:
    """A channel-first MetaTensor of ``image`` (or of ``data`` on its grid)."""
    array = np.asarray(image.dataobj if data is None else data)
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(array))[None], affine=torch.as_tensor(image.affine, dtype=torch.float64))


def _to_network_grid(tensor: MetaTensor, config: PreprocessingConfig, mode: str) -> MetaTensor:
    tensor = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(tensor)
    return Spacing(pixdim=config.spacing_mm, mode=mode, padding_mode="border" if mode == "nearest" else "zeros")(tensor)


def image_to_network(image: nib.Nifti1Image, config: PreprocessingConfig) -> MetaTensor:
    """CT → (1, X, Y, Z) float32 in [0, 1] on the network grid, affine kept."""
    tensor = as_meta_tensor(image).float()
    low, high = config.hu_window
    tensor = _to_network_grid(tensor, config, "bilinear")
    return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)(tensor)


def label_to_network(label: nib.Nifti1Image, data: np.ndarray, config: PreprocessingConfig) -> MetaTensor:
    """Label map → (1, X, Y, Z) uint8 on the network grid (nearest neighbour)."""
    tensor = as_meta_tensor(label, data).float()
    return _to_network_grid(tensor, config, "nearest").to(torch.uint8)


def label_to_input_grid(label: MetaTensor, reference: nib.Nifti1Image) -> np.ndarray:
    """A network-grid label map (1, X, Y, Z) → uint8 array on ``reference``'s exact grid."""
    target = MetaTensor(torch.zeros((1, *reference.shape[:3])), affine=torch.as_tensor(reference.affine, dtype=torch.float64))
    resampled = ResampleToMatch(mode="nearest", padding_mode="zeros")(label.float(), target)
    return np.asarray(resampled[0].round().to(torch.uint8).cpu())
