"""nnU-Net's resampling, for models imported from nnU-Net (``ciss.preprocessing.resampling = "nnunet"``).

nnU-Net does not resample onto a grid of the target spacing anchored at the first voxel, as the engine's own
bundles do: it resizes the volume to ``round(shape × spacing / target)`` voxels with the edges of the old and new
volumes aligned (scikit-image's ``resize``: ``scipy.ndimage.zoom`` with ``grid_mode=True``, edge values extended,
the result clipped to the input's range), cubic for the CT, linear for the logits on the way back. When one axis
is more than 3 × coarser than another, it resizes in-plane slice by slice and takes the nearest slice along that
axis. This module reproduces that on the engine's RAS arrays (resizing is separable, so the axis order does not
matter) and gives the grid it lands on, so an imported model sees the voxels it was trained on.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's ANISO_THRESHOLD


def new_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, int, int]:
    return tuple(int(round(s / t * n)) for s, t, n in zip(spacing, target, shape))  # type: ignore[return-value]


def _lowres_axis(spacing: tuple[float, ...]) -> int | None:
    """The one axis that is coarsest, or None when two or three share the largest spacing."""
    axes = [a for a, s in enumerate(spacing) if s == max(spacing)]
    return axes[0] if len(axes) == 1 else None


def separate_axis(current: tuple[float, ...], target: tuple[float, ...]) -> int | None:
    """The axis resampled apart (nearest neighbour) from the in-plane ones, as nnU-Net decides it, or None."""
    for spacing in (current, target):
        if max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD:
            return _lowres_axis(spacing)
    return None


def _resize(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    """scikit-image's ``resize(mode="edge", anti_aliasing=False)`` (clip on): edge-aligned zoom."""
    if tuple(array.shape) == tuple(shape):
        return array
    factors = [n / o for n, o in zip(shape, array.shape)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    return np.clip(out, array.min(), array.max()) if order > 0 else out


def _nearest_along(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Nearest slice along ``axis`` with the edges aligned (nnU-Net's order-0 ``map_coordinates``)."""
    old = array.shape[axis]
    if old == size:
        return array
    source = np.clip(np.floor(old / size * (np.arange(size) + 0.5)), 0, old - 1).astype(int)  # round half up: x − ½ + ½
    return np.take(array, source, axis=axis)


def resample(volume: np.ndarray, shape: tuple[int, int, int], current: tuple[float, ...], target: tuple[float, ...], order: int) -> np.ndarray:
    """One 3-D float volume resized to ``shape`` as nnU-Net resizes it (``order`` 3 for a CT, 1 for logits, 0 for labels)."""
    volume = volume.astype(np.float64, copy=False)
    axis = separate_axis(current, target) if order > 0 else None
    if axis is None:
        return _resize(volume, shape, order)
    in_plane = tuple(n for a, n in enumerate(shape) if a != axis)
    slices = [_resize(np.take(volume, i, axis=axis), in_plane, order) for i in range(volume.shape[axis])]
    return _nearest_along(np.stack(slices, axis=axis), axis, shape[axis])


def resized_affine(affine: np.ndarray, old_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The voxel → world map of the resized grid: voxel i sits at old continuous index f·(i + ½) − ½, f = old/new."""
    factors = np.array(old_shape, dtype=np.float64) / np.array(shape, dtype=np.float64)
    scale = np.eye(4)
    scale[:3, :3] = np.diag(factors)
    scale[:3, 3] = (factors - 1.0) / 2.0
    return affine @ scale
