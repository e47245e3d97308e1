"""Patch augmentation: the spatial and intensity variety a few CTs lack, from MONAI dictionary transforms.

Spatial transforms (rotation, scaling, shear) move the image and the labels together (labels with
nearest neighbour). A patch that carries the cached teacher's maps gets intensity transforms only:
resampling its 20-odd channels took 1.3 s a patch against 0.2 s for image and labels (2 cores, under
load), more than the whole iteration. Intensity transforms touch the image only: the cached teacher
keeps what the old model said on the clean CT, a steadier target than its answer on a noisy copy.
There is no left-right mirroring: kidney_left and kidney_right are different organs.
Organ contrast (base training and domain steps, whose labels name the organs they train) gives each enhancing organ
of a patch (perfused tissue and blood, from the organ catalog) its own intensity offset: a contrast phase reorders
the organs' intensities (enhanced kidneys 185 HU and brighter than the liver, 15 HU and darker without contrast:
the two real CTs), which no global intensity transform can. Organs that contrast does not brighten (the
gallbladder's bile, a bladder's urine) keep their intensity: offsetting the gallbladder too cut it from 0.82 to
0.47 DSC on its own phase (RESULTS.md (aa)). MONAI has no per-label intensity transform; SynthSeg's per-label
randomisation is the idea. The result stays inside the intensities the model's normalisation produces ([0, 1] for a
HU window): a kidney brightened past the window's top shows as the window would show it, not as a value no CT gives.
It runs only with the other augmentation.
Additive amounts (organ offsets, intensity shift, noise) are given in Hounsfield units and converted to the model's
own units (ModelIntensities), so a model imported with another window or a z-score sees the same HU; where its
normalisation is per image (no fixed scale), they are taken in the engine's window units.
Probabilities and ranges follow nnU-Net's defaults, reduced where a 64³ patch on CPU would pay more
than it gains (measured: benchmarks/RESULTS.md).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    GaussianSmooth,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
    RandomizableTransform,
)
from monai.utils import convert_to_tensor

from ..preprocessing import ENGINE_HU_PER_UNIT, ModelIntensities, PreprocessingConfig
from ..registry import ClassRegistry, enhancing_organ_names

ROTATION = math.radians(15.0)
# An organ's offset is drawn from ±170 HU: the kidneys' difference between the two real CTs (15 against 185 HU).
ORGAN_CONTRAST_HU = 170.0
# nnU-Net-like shift and noise: 5 % and 3 % of the engine's 425-HU window.
SHIFT_HU = 21.25
NOISE_HU = 12.75
ENGINE_INTENSITIES = PreprocessingConfig().model_intensities()


@dataclasses.dataclass(frozen=True)
class OrganContrast:
    """Which share of the patches get organ contrast, and the label values of the organs that enhance; of those
    patches the ``replay`` share shows one of the ``recorded`` sites' organ offsets (site_appearance.py) instead of
    random ones."""

    share: float
    labels: tuple[int, ...]
    replay: float = 0.0
    recorded: tuple[Mapping[int, float], ...] = ()


def organ_contrast_for(share: float, registry: ClassRegistry, labelled: Sequence[int] | None = None, *, replay: float = 0.0,
                       recorded: Sequence[Mapping[str, float]] = ()) -> OrganContrast:
    """``share`` for the registry's organs that IV contrast brightens (the organ catalog says which), of those
    ``labelled`` (class ids; None: every organ): a step without such an organ draws its patches as without it.
    ``replay`` and ``recorded`` (organ name → offset in model units, per earlier site): see OrganContrast."""
    enhancing = enhancing_organ_names()
    by_label = tuple({registry.by_name(name).label: offset for name, offset in site.items()} for site in recorded)
    return OrganContrast(share, tuple(o.label for o in registry.organs if o.name in enhancing and (labelled is None or o.label in labelled)),
                         replay, by_label)


def share_that_ran(share: float, augmentation: bool) -> float:
    """The organ-contrast share a version records: none without the rest of the augmentation, which it is part of."""
    return share if augmentation else 0.0


class RandOrganContrastd(RandomizableTransform, MapTransform):
    """Adds to ``keys`` (images) one random offset per organ of ``label_key`` whose value is in ``organs``, drawn
    from ``offsets`` (low, high) for each organ independently; other voxels keep their values. With ``recorded``
    (one mapping organ → offset per earlier site) a ``replay`` share of the patches it changes takes one site's
    offsets instead, drawn uniformly; an organ that site lacks keeps its intensity. The offset map is smoothed
    (Gaussian, σ one voxel) so an organ's rim blends as partial volume does, instead of a step that would outline
    the label for the network. Offset voxels are clipped to ``bounds`` (low, high) when given. ``label_key`` holds one
    channel, as the sampler's patches do."""

    def __init__(self, keys: KeysCollection, label_key: str, organs: Sequence[int], prob: float,
                 offsets: tuple[float, float], bounds: tuple[float, float] | None = None, *,
                 replay: float = 0.0, recorded: Sequence[Mapping[int, float]] = ()) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.organs = tuple(organs)
        self.offsets = offsets
        self.bounds = bounds
        self.replay = replay if recorded else 0.0
        self.recorded = tuple(recorded)
        self._smooth = GaussianSmooth(sigma=1.0)

    def _organ_offsets(self, organs: list[int]) -> list[float]:
        """This patch's offset for each of ``organs``: one recorded site's, or random."""
        if self.replay > 0 and self.R.uniform() < self.replay:
            site = self.recorded[self.R.randint(len(self.recorded))]
            return [float(site.get(organ, 0.0)) for organ in organs]
        return [float(offset) for offset in self.R.uniform(*self.offsets, size=len(organs))]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        label = convert_to_tensor(d[self.label_key], track_meta=False)
        organs = [int(v) for v in torch.unique(label) if int(v) in self.organs]
        if not organs:
            return d
        offset_map = torch.zeros(label.shape, dtype=torch.float32, device=label.device)
        for organ, offset in zip(organs, self._organ_offsets(organs)):
            offset_map[label == organ] = offset
        offset_map = convert_to_tensor(self._smooth(offset_map), track_meta=False)
        for key in self.key_iterator(d):
            shifted = d[key] + offset_map.to(device=d[key].device, dtype=d[key].dtype)
            d[key] = shifted if self.bounds is None else torch.where(offset_map != 0, shifted.clamp(*self.bounds), d[key])
        return d


def _organ_contrast_transforms(organ_contrast: OrganContrast | None, hu_per_unit: float,
                               bounds: tuple[float, float] | None) -> list[RandOrganContrastd]:
    """No transform where no patch would change: a zero share or no enhancing organ (the other transforms' draws stay as they were)."""
    if organ_contrast is None or organ_contrast.share <= 0 or not organ_contrast.labels:
        return []
    offset = ORGAN_CONTRAST_HU / hu_per_unit
    return [RandOrganContrastd(keys="image", label_key="label", organs=organ_contrast.labels, prob=organ_contrast.share,
                               offsets=(-offset, offset), bounds=bounds, replay=organ_contrast.replay, recorded=organ_contrast.recorded)]


def patch_augmentation(patch_size: Sequence[int], *, with_maps: bool, organ_contrast: OrganContrast | None = None,
                       intensities: ModelIntensities = ENGINE_INTENSITIES) -> Compose:
    """Random transforms of one cropped patch (``image`` in the model's units, ``label``, and ``maps`` when
    ``with_maps``); ``organ_contrast``: which patches' enhancing organs get their own offsets (RandOrganContrastd);
    ``intensities``: the model's units (PreprocessingConfig.model_intensities)."""
    hu_per_unit = intensities.hu_per_unit if intensities.hu_per_unit is not None else ENGINE_HU_PER_UNIT
    # Border padding: a rotated patch's corners repeat the edge instead of showing a black frame
    # (zero would read as air, a context CTs never have inside the body).
    spatial = RandAffined(
        keys=["image", "label"], spatial_size=tuple(patch_size), prob=0.2, rotate_range=(ROTATION,) * 3, scale_range=(0.15,) * 3,
        shear_range=(0.05,) * 3, mode=["bilinear", "nearest"], padding_mode="border",
    )
    return Compose(
        ([] if with_maps else [spatial])
        + _organ_contrast_transforms(organ_contrast, hu_per_unit, intensities.bounds)
        + [
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.15),
            RandShiftIntensityd(keys="image", offsets=SHIFT_HU / hu_per_unit, prob=0.15),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.15),
            RandSimulateLowResolutiond(keys="image", zoom_range=(0.5, 1.0), prob=0.1),
            RandGaussianSmoothd(keys="image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.1),
            RandGaussianNoised(keys="image", std=NOISE_HU / hu_per_unit, prob=0.15),
        ]
    )
