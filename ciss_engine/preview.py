"""PNG preview montage: axial and coronal slices with organ overlays and a legend.

People check a segmentation by looking at it; this picture is what the demo, the README and the
model card show. Slices are chosen where the organs are, not at fixed positions.
"""
from __future__ import annotations

from pathlib import Path

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


def write_preview_png(path: Path, image: nib.Nifti1Image, label: np.ndarray, registry: ClassRegistry, *, volumes_ml: dict[str, float] | None = None, title: str = "") -> Path:
    """Write a 2×3 montage (3 axial, 3 coronal) of ``label`` over ``image`` (same grid) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine))
    ct = np.asarray(canonical.dataobj)
    seg = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(label.astype(np.uint8), image.affine)).dataobj)
    zooms = canonical.header.get_zooms()[:3]
    figure, axes = plt.subplots(2, 3, figsize=(12, 8.5), facecolor="black")
    for row, axis in enumerate((2, 1)):
        for column, index in enumerate(_organ_slices(seg, axis, 3)):
            ct_slice = np.take(ct, index, axis=axis)
            seg_slice = np.take(seg, index, axis=axis)
            # Radiological display: the patient's right on the image's left (RAS +x is the patient's right),
            # anterior (axial) or superior (coronal) at the top.
            aspect = zooms[1] / zooms[0] if axis == 2 else zooms[2] / zooms[0]
            ax = axes[row, column]
            ax.imshow(_radiological(ct_slice), cmap="gray", vmin=-175, vmax=250, aspect=aspect, interpolation="nearest")
            ax.imshow(_radiological(_overlay_rgba(seg_slice, registry)), aspect=aspect, interpolation="nearest")
            ax.set_title(f"{'axial' if axis == 2 else 'coronal'} {index}", color="white", fontsize=9)
            ax.axis("off")
    present = set(np.unique(seg).tolist())
    handles = [
        Patch(color=[c / 255 for c in organ.rgb], label=organ.name + (f" {volumes_ml[organ.name]:.0f} mL" if volumes_ml else "") + ("" if organ.label in present else " (not found)"))
        for organ in registry.organs
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), facecolor="black", labelcolor="white", fontsize=9, frameon=False)
    if title:
        figure.suptitle(title, color="white")
    figure.tight_layout(rect=(0, 0.08, 1, 0.96))
    write_atomic(Path(path), lambda tmp: figure.savefig(tmp, dpi=80, facecolor="black", format="png"))
    plt.close(figure)
    return Path(path)
