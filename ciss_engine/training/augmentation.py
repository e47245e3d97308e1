"""Patch augmentation: the spatial and intensity variety a few CTs lack, from MONAI dictionary transforms.

Spatial transforms (rotation, scaling, shear) move the image and the labels together (labels with
nearest neighbour). A patch that carries the cached teacher's maps gets intensity transforms only:
resampling its 20-odd channels took 1.3 s a patch against 0.2 s for image and labels (2 cores, under
load), more than the whole iteration. Intensity transforms touch the image only: the cached teacher
keeps what the old model said on the clean CT, a steadier target than its answer on a noisy copy.
There is no left-right mirroring: kidney_left and kidney_right are different organs.
Probabilities and ranges follow nnU-Net's defaults, reduced where a 64³ patch on CPU would pay more
than it gains (measured: benchmarks/RESULTS.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
)

ROTATION = math.radians(15.0)


def patch_augmentation(patch_size: Sequence[int], *, with_maps: bool) -> Compose:
    """Random transforms of one cropped patch (``image`` in [0, 1], ``label``, and ``maps`` when ``with_maps``)."""
    # Border padding: a rotated patch's corners repeat the edge instead of showing a black frame
    # (zero would read as air, a context CTs never have inside the body).
    spatial = RandAffined(
        keys=["image", "label"], spatial_size=tuple(patch_size), prob=0.2, rotate_range=(ROTATION,) * 3, scale_range=(0.15,) * 3,
        shear_range=(0.05,) * 3, mode=["bilinear", "nearest"], padding_mode="border",
    )
    return Compose(
        ([] if with_maps else [spatial])
        + [
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.15),
            RandShiftIntensityd(keys="image", offsets=0.05, prob=0.15),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.15),
            RandSimulateLowResolutiond(keys="image", zoom_range=(0.5, 1.0), prob=0.1),
            RandGaussianSmoothd(keys="image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.1),
            RandGaussianNoised(keys="image", std=0.03, prob=0.15),
        ]
    )
