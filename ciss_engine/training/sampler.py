"""Class-balanced patch sampling, reproducible per iteration.

Small organs need their own share of patches: a patch is centred on a voxel of a class drawn uniformly
among the classes present in the pool's cases (pools below; ``1 - background_share`` of the time), in a case drawn among those
that hold it, or on background. Drawing the class before the case gives an organ labelled in only some
cases (chest_4x has no gallbladder) as many patches as any other; drawn per case, it had half. Measured
here: class-balanced patches with bf16 took the base model from finding 1 of 4 organs to 3 of 4 in fewer
iterations.
Synthetic patients (synthetic_cases.py) form a pool of their own: ``synthetic_share`` of the patches come from it,
the class again drawn before the case, so the site's CTs keep the rest however many phantom patients there are;
their patches may get organ contrast of their own (a phantom organ can change intensity at no cost to a real one).
A step may centre its background patches inside the patient's body only (``background_in_body``, body_mask.py): drawn
anywhere, a third to a half of them showed the air around the patient. It may also draw its new organs more often than
the old ones (``new_organ_weight``): the step is there to learn them, and the old organs, drawn by the old model's
pseudo-labels, are held by distillation on every patch, which shows them around the new ones too.
Each iteration's randomness derives from (seed, iteration) alone, so a resumed run draws exactly
the patches an uninterrupted one would have drawn. Maps computed once over each whole case (the frozen
old model's logits and features: the cached teacher) are cropped with the very same crop.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import ClassesToIndices, RandCropByLabelClassesd, SpatialPad
from monai.utils import convert_to_tensor

from ..preprocessing import ModelIntensities
from .augmentation import ENGINE_INTENSITIES, OrganContrast, patch_augmentation
from .body_mask import body_mask
from .cases import PreparedCase


@dataclasses.dataclass(frozen=True)
class PatchBatch:
    """One iteration's patches: images (B, 1, *patch) float32, labels (B, *patch) int64 and, when the
    sampler holds per-case maps, their crops (B, C, *patch) in the maps' own dtype."""

    images: torch.Tensor
    labels: torch.Tensor
    maps: torch.Tensor | None = None

    def to(self, device: torch.device) -> PatchBatch:
        return PatchBatch(self.images.to(device), self.labels.to(device), None if self.maps is None else self.maps.to(device))


@dataclasses.dataclass(frozen=True)
class CasePool:
    """Cases patches are drawn from together: per class (0: background) the cases holding it, and the organs present."""

    cases: list[int]
    cases_with: dict[int, list[int]]
    organs: list[int]

    @classmethod
    def of(cls, cases: list[int], indices: Sequence[Sequence[np.ndarray]], num_classes: int) -> CasePool:
        cases_with = {c: [i for i in cases if len(indices[i][c]) > 0] for c in range(num_classes)}
        return cls(cases, cases_with, [c for c in range(1, num_classes) if cases_with[c]])


def iteration_seed(seed: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])


class PatchSampler:
    """Draws ``batch_size`` patches an iteration from in-memory cases."""

    def __init__(
        self, cases: Sequence[PreparedCase], *, num_classes: int, patch_size: Sequence[int], batch_size: int, seed: int,
        background_share: float = 0.2, maps: Sequence[torch.Tensor] | None = None, augment: bool = False,
        organ_contrast: OrganContrast | None = None, intensities: ModelIntensities = ENGINE_INTENSITIES, synthetic_share: float = 0.0,
        synthetic_organ_contrast: OrganContrast | None = None, background_in_body: bool = False,
        new_organs: Sequence[int] = (), new_organ_weight: float = 1.0,
    ) -> None:
        """``maps``: one (C, X, Y, Z) tensor per case on the case's network grid, cropped with each patch;
        ``augment``: random spatial and intensity transforms of each patch (``augmentation.py``), with
        ``organ_contrast`` giving a share of the patches' enhancing organs their own intensity offsets;
        ``intensities``: the model's units, into which the transforms' Hounsfield amounts are converted
        (PreprocessingConfig.model_intensities); ``synthetic_share``: the share of patches drawn from the
        ``synthetic`` cases, when there are any; ``synthetic_organ_contrast``: their patches' organ contrast
        (None: ``organ_contrast``), so that phantom organs, unlike the site's, can change intensity often;
        ``background_in_body``: background patches centred inside the patient's body only (body_mask.py), where a
        case has any background there; ``new_organ_weight``: how many times as often as an old organ each of the
        ``new_organs`` (class ids) is drawn for an organ-centred patch (1: every organ alike)."""
        if not 0.0 <= background_share < 1.0:
            raise ValueError(f"background_share must be in [0, 1), got {background_share}")
        if not 0.0 <= synthetic_share < 1.0:
            raise ValueError(f"synthetic_share must be in [0, 1), got {synthetic_share}")
        if new_organ_weight <= 0:
            raise ValueError(f"new_organ_weight must be positive, got {new_organ_weight}")
        if maps is not None and [m.shape[1:] for m in maps] != [c.image.shape[1:] for c in cases]:
            raise ValueError("each case's maps must have the case's spatial shape")
        self.batch_size = batch_size
        self.seed = seed
        pad = SpatialPad(spatial_size=patch_size)
        self._images = [pad(c.image) for c in cases]
        self._labels = [pad(c.label) for c in cases]
        self._maps = None if maps is None else [pad(m) for m in maps]
        keys = ["image", "label"] + ([] if maps is None else ["maps"])
        self._augment = patch_augmentation(patch_size, with_maps=maps is not None, organ_contrast=organ_contrast, intensities=intensities) if augment else None
        self._augment_synthetic = (
            patch_augmentation(patch_size, with_maps=maps is not None, organ_contrast=synthetic_organ_contrast, intensities=intensities)
            if augment and synthetic_organ_contrast is not None and any(c.synthetic for c in cases) else self._augment
        )
        self._synthetic_cases = [c.synthetic for c in cases]
        steering = [pad(c.sampling_label if c.sampling_label is not None else c.label) for c in cases]
        to_indices = ClassesToIndices(num_classes=num_classes)
        self._indices = [to_indices(s) for s in steering]
        if background_in_body:
            for indices, image in zip(self._indices, self._images):
                inside = indices[0][body_mask(image).flatten()[indices[0]]]
                if len(inside) > 0:
                    indices[0] = inside
        self.background_share = background_share
        self.new_organs = frozenset(new_organs)
        self.new_organ_weight = new_organ_weight
        self._site = CasePool.of([i for i, c in enumerate(cases) if not c.synthetic], self._indices, num_classes)
        synthetic = [i for i, c in enumerate(cases) if c.synthetic]
        self._synthetic = CasePool.of(synthetic, self._indices, num_classes) if synthetic and synthetic_share > 0 else None
        self.synthetic_share = synthetic_share
        # Per case and class, a crop centred on that class.
        self._crops = [
            {c: RandCropByLabelClassesd(keys=keys, label_key="label", spatial_size=patch_size, ratios=[float(k == c) for k in range(num_classes)],
                                        num_classes=num_classes, num_samples=1, indices_key="indices", warn=False)
             for c in range(num_classes) if len(indices[c]) > 0}
            for indices in self._indices
        ]

    def _draw_case_and_class(self, rng: np.random.Generator) -> tuple[int, int]:
        """The pool (synthetic for ``synthetic_share`` of the draws), the class a patch is centred on (background for
        ``background_share`` of them), then a case of the pool holding it."""
        pool = self._synthetic if self._synthetic is not None and rng.random() < self.synthetic_share else self._site
        background = rng.random() < self.background_share or not pool.organs
        organs = self._organ_group(pool, rng)
        chosen = 0 if background else organs[int(rng.integers(len(organs)))]
        holders = pool.cases_with[chosen] or pool.cases
        case = holders[int(rng.integers(len(holders)))]
        return case, chosen if chosen in self._crops[case] else next(iter(self._crops[case]))

    def _organ_group(self, pool: CasePool, rng: np.random.Generator) -> list[int]:
        """The organs an organ-centred patch is drawn among: the pool's new organs or its old ones, new with the share
        their weight gives them (w·n_new / (w·n_new + n_old)); every organ where they weigh alike or one group is absent
        (then no draw is spent, so such runs draw the patches they drew before the weight existed)."""
        new = [organ for organ in pool.organs if organ in self.new_organs]
        old = [organ for organ in pool.organs if organ not in self.new_organs]
        if self.new_organ_weight == 1.0 or not new or not old:
            return pool.organs
        weighted_new = self.new_organ_weight * len(new)
        return new if rng.random() < weighted_new / (weighted_new + len(old)) else old

    def batch(self, iteration: int) -> PatchBatch:
        """The patches of ``iteration`` (the same ones whenever it is asked for)."""
        rng = np.random.default_rng(iteration_seed(self.seed, iteration))
        images, labels, maps = [], [], []
        for _ in range(self.batch_size):
            case, centre_class = self._draw_case_and_class(rng)
            crop = self._crops[case][centre_class]
            crop.set_random_state(seed=int(rng.integers(2**31 - 1)))
            data = {"image": self._images[case], "label": self._labels[case], "indices": self._indices[case]}
            if self._maps is not None:
                data["maps"] = self._maps[case]
            patch = crop(data)[0]
            augment = self._augment_synthetic if self._synthetic_cases[case] else self._augment
            if augment is not None:
                augment.set_random_state(seed=int(rng.integers(2**31 - 1)))
                patch = augment(patch)
            # Plain tensors: a MetaTensor sends every network op through MONAI's metadata tracking
            # (measured 4-8 % of an iteration, benchmarks/RESULTS.md (h)) and torch.compile refuses it.
            images.append(convert_to_tensor(patch["image"], track_meta=False))
            labels.append(convert_to_tensor(patch["label"], track_meta=False)[0].long())
            if self._maps is not None:
                maps.append(convert_to_tensor(patch["maps"], track_meta=False))
        return PatchBatch(torch.stack(images).float(), torch.stack(labels), torch.stack(maps) if maps else None)
