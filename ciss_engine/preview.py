"""PNG preview montage: axial and coronal slices with organ overlays and a legend.

People check a segmentation by looking at it; this picture is what the demo, the README and the
model card show. Slices are chosen where the organs are, not at fixed positions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .atomic import write_atomic
from .registry import ClassRegistry


def _overlay_rgba(label: np.ndarray, registry: ClassRegistry) -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.float32)
    for organ in registry.organs:
        lut[organ.label] = (*[c / 255.0 for c in organ.rgb], 0.55)
    return lut[label]


def _radiological(plane: np.ndarray) -> np.ndarray:
    """A (x, y|z, …) RAS plane as displayed: rows from anterior/superior down, columns from patient right."""
    return np.flip(np.rot90(plane, axes=(0, 1)), axis=1)


def _organ_slices(label: np.ndarray, axis: int, count: int) -> list[int]:
    """Slice indices spread over the extent of the labelled region along ``axis``."""
    profile = (label > 0).sum(axis=tuple(a for a in range(3) if a != axis))
    occupied = np.flatnonzero(profile)
    if occupied.size == 0:
        return [label.shape[axis] // 2] * count
    return [int(v) for v in np.linspace(occupied[0], occupied[-1], count + 2)[1:-1].round()]


def _canonical(image: nib.Nifti1Image, labels: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], tuple[float, ...]]:
    """CT and label maps reoriented to RAS, and the RAS voxel sizes, so every picture reads the same way."""
    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine))
    segs = [np.asarray(nib.as_closest_canonical(nib.Nifti1Image(label.astype(np.uint8), image.affine)).dataobj) for label in labels]
    return np.asarray(canonical.dataobj), segs, tuple(float(z) for z in canonical.header.get_zooms()[:3])


def _draw_slice(ax: Any, ct: np.ndarray, seg: np.ndarray, registry: ClassRegistry, axis: int, index: int, zooms: tuple[float, ...], title: str) -> None:
    """One slice in radiological display: the patient's right on the image's left (RAS +x is the patient's
    right), anterior (axial) or superior (coronal) at the top."""
    aspect = zooms[1] / zooms[0] if axis == 2 else zooms[2] / zooms[0]
    ax.imshow(_radiological(np.take(ct, index, axis=axis)), cmap="gray", vmin=-175, vmax=250, aspect=aspect, interpolation="nearest")
    ax.imshow(_radiological(_overlay_rgba(np.take(seg, index, axis=axis), registry)), aspect=aspect, interpolation="nearest")
    ax.set_title(title, color="white", fontsize=9)
    ax.axis("off")


def _legend(figure: Any, registry: ClassRegistry, present: set[int], volumes_ml: dict[str, float] | None = None) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(color=[c / 255 for c in organ.rgb], label=organ.name + (f" {volumes_ml[organ.name]:.0f} mL" if volumes_ml else "") + ("" if organ.label in present else " (not found)"))
        for organ in registry.organs
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), facecolor="black", labelcolor="white", fontsize=9, frameon=False)


def _save(figure: Any, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    if title:
        figure.suptitle(title, color="white")
    figure.tight_layout(rect=(0, 0.08, 1, 0.96))
    write_atomic(Path(path), lambda tmp: figure.savefig(tmp, dpi=80, facecolor="black", format="png"))
    plt.close(figure)
    return Path(path)


def _figure(rows: int, columns: int, size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=size, facecolor="black", squeeze=False)


def write_preview_png(path: Path, image: nib.Nifti1Image, label: np.ndarray, registry: ClassRegistry, *, volumes_ml: dict[str, float] | None = None, title: str = "") -> Path:
    """Write a 2×3 montage (3 axial, 3 coronal) of ``label`` over ``image`` (same grid) to ``path``."""
    ct, (seg,), zooms = _canonical(image, [label])
    figure, axes = _figure(2, 3, (12, 8.5))
    for row, axis in enumerate((2, 1)):
        for column, index in enumerate(_organ_slices(seg, axis, 3)):
            _draw_slice(axes[row, column], ct, seg, registry, axis, index, zooms, f"{'axial' if axis == 2 else 'coronal'} {index}")
    _legend(figure, registry, set(np.unique(seg).tolist()), volumes_ml)
    return _save(figure, path, title)


def write_comparison_png(path: Path, image: nib.Nifti1Image, before: np.ndarray, after: np.ndarray, registry: ClassRegistry, *, labels: tuple[str, str], title: str = "") -> Path:
    """Before (left) and after (right) on the same slices, 2 axial rows and 1 coronal: what a step changed.

    ``registry`` must name every label of both maps (the newer version's does); the slices are spread
    over where either map has organs, so an organ that vanished is still on the picture.
    """
    ct, (old, new), zooms = _canonical(image, [before, after])
    either = np.maximum(old > 0, new > 0)
    slices = [(2, index) for index in _organ_slices(either, 2, 2)] + [(1, index) for index in _organ_slices(either, 1, 1)]
    figure, axes = _figure(len(slices), 2, (9, 4.2 * len(slices)))
    for row, (axis, index) in enumerate(slices):
        for column, (seg, name) in enumerate(zip((old, new), labels)):
            _draw_slice(axes[row, column], ct, seg, registry, axis, index, zooms, f"{name}, {'axial' if axis == 2 else 'coronal'} {index}")
    _legend(figure, registry, set(np.unique(old).tolist()) | set(np.unique(new).tolist()))
    return _save(figure, path, title)
