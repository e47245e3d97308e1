"""Class prototypes (PCDD Eqs. 2-3): per-class mean feature vectors, local (one batch) and global (running).

Per-class features are gathered with a one-hot matrix product over a (B·V)×K view of the feature map, so
each row stays one voxel's K channels whatever the batch size (selecting voxels with a boolean mask and then
calling ``view`` on the result mixes voxels and channels when B > 1, a known bug of the reference baselines).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .errors import BundleError

# Label value of voxels that no loss and no prototype may use (padding, unlabelled).
IGNORE_INDEX = 255


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resample a (B, D, H, W) label map to ``size`` by nearest neighbour (labels never blend)."""
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    # Float32 holds label ids exactly, and nearest interpolation only copies values.
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return resized[:, 0].to(labels.dtype)


def region_rows(tensor: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The voxels of ``region`` (B, D, H, W) bool as rows of their channels: (B, C, D, H, W) -> (n, C).

    Moving channels last before selecting keeps each row one voxel's channels whatever the batch size;
    selecting by index is several times faster on CPU than boolean-mask indexing.
    """
    index = region.reshape(-1).nonzero().squeeze(1)
    return tensor.movedim(1, -1).reshape(-1, tensor.shape[1]).index_select(0, index)


def _check_and_resize(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if features.dim() != labels.dim() + 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features {tuple(features.shape)} and labels {tuple(labels.shape)} must be "
                         "(B, K, *S) and (B, *S)")
    return resize_labels(labels, features.shape[2:])


def class_feature_sums(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums (float64, (C, K)) and voxel counts (int64, (C,)), without gradient.

    one_hot(labels)ᵀ · F over the rows of the labelled voxels only: labels outside 0..num_classes-1
    (IGNORE_INDEX) are skipped before any copy, so summing today's new organs touches only their voxels.
    A matrix product rather than scatter/index_add keeps the result bitwise deterministic on CUDA.

    Args:
        features: (B, K, D', H', W'), any float dtype.
        labels: (B, D, H, W) long; downsampled by nearest neighbour when F is coarser.
        num_classes: C, the number of rows of the result.
    """
    labels = _check_and_resize(features, labels)
    kept = (labels >= 0) & (labels < num_classes)
    with torch.no_grad(), torch.autocast(device_type=features.device.type, enabled=False):
        rows = region_rows(features.detach(), kept).to(torch.float64)
        member = labels[kept][:, None] == torch.arange(num_classes, device=labels.device)
        return member.to(torch.float64).T @ rows, member.sum(dim=0)


def local_prototypes(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local prototypes p̂_c (PCDD Eq. 2): mean of F over the batch's voxels labelled c, differentiable.

    Shapes: features (B, K, D', H', W'), labels (B, D, H, W) -> prototypes (C, K) float32 (zero rows for
    absent classes) and present (C,) bool. A batched product of the (B, C, V) one-hot map with the
    (B, K, V) features, which needs no voxel-row copy forward or backward (faster on CPU than
    gathering rows, benchmarks/RESULTS.md (c)); float32 suffices within one batch, the running global means use float64.
    """
    labels = _check_and_resize(features, labels)
    batch, channels = features.shape[:2]
    with torch.autocast(device_type=features.device.type, enabled=False):
        classes = torch.arange(num_classes, device=labels.device)
        one_hot = (labels.reshape(batch, 1, -1) == classes[None, :, None]).float()
        sums = torch.bmm(one_hot, features.float().reshape(batch, channels, -1).transpose(1, 2)).sum(dim=0)
        counts = one_hot.sum(dim=(0, 2))
    return sums / counts.clamp(min=1)[:, None], counts > 0


class GlobalPrototypes:
    """Global prototypes p_c (PCDD Eq. 3): running means of F over every voxel of class c seen so far.

    The update is p_c ← (N_c·p_c + Σf)/(N_c + n), N_c += n; the paper's Eq. 3 numerator is a typo for this
    running mean. Means and counts are float64/int64 so that millions of voxels add up without drift.

    >>> store = GlobalPrototypes(num_classes=2, channels=3)
    >>> store.update(torch.ones(2, 3, dtype=torch.float64) * 4, torch.tensor([2, 0]))
    >>> store.means[0].tolist(), store.counts.tolist()
    ([2.0, 2.0, 2.0], [2, 0])
    """

    def __init__(self, num_classes: int, channels: int) -> None:
        if num_classes < 1 or channels < 1:
            raise ValueError(f"need at least one class and one channel, got {num_classes} classes, {channels} channels")
        self.means = torch.zeros(num_classes, channels, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def channels(self) -> int:
        return self.means.shape[1]

    def update(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Fold per-class sums (C, K) and counts (C,) of new voxels into the running means."""
        if tuple(sums.shape) != tuple(self.means.shape) or tuple(counts.shape) != (self.num_classes,):
            raise ValueError(f"sums {tuple(sums.shape)} / counts {tuple(counts.shape)} do not match "
                             f"prototypes {tuple(self.means.shape)}")
        sums = sums.detach().to("cpu", torch.float64)
        counts = counts.detach().to("cpu", torch.int64)
        total = self.counts + counts
        seen = total > 0
        updated = (self.counts[:, None] * self.means + sums) / total.clamp(min=1)[:, None]
        self.means = torch.where(seen[:, None], updated, self.means)
        self.counts = total

    def update_from_batch(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: features (B, K, D', H', W'), labels (B, D, H, W) with class ids 0..C-1."""
        self.update(*class_feature_sums(features, labels, self.num_classes))

    def as_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The means as float32 (C, K) on ``device``, for affinities and losses."""
        return self.means.to(device=device, dtype=torch.float32)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """A flat dict for safetensors (no pickles): ``prototypes`` (C, K) float64, ``counts`` (C,) int64."""
        return {"prototypes": self.means.clone().contiguous(), "counts": self.counts.clone().contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> GlobalPrototypes:
        """Rebuild from :meth:`to_tensors`' dict; a missing or inconsistent entry raises BundleError."""
        means, counts = tensors.get("prototypes"), tensors.get("counts")
        hint = ("the bundle's prototypes file is damaged or from another program; roll back to the previous "
                "bundle version or re-run the step that wrote it")
        if means is None or counts is None:
            raise BundleError(f"prototypes need 'prototypes' and 'counts', found {sorted(tensors)}", hint)
        if means.dim() != 2 or counts.shape != means.shape[:1] or not means.is_floating_point():
            raise BundleError(
                f"prototypes {tuple(means.shape)} and counts {tuple(counts.shape)} do not fit together", hint)
        if bool((counts < 0).any()):
            raise BundleError("prototype voxel counts are negative", hint)
        store = cls(means.shape[0], means.shape[1])
        store.means = means.to("cpu", torch.float64).clone()
        store.counts = counts.to("cpu", torch.int64).clone()
        return store


# Bundle key of the pre-activation means; "prototypes"/"counts" keep the post-activation ones, so a
# bundle written before pre-activation prototypes existed still loads (without them).
PRE_ACTIVATION_KEY = "prototypes_pre_activation"


class FeaturePrototypes:
    """Global prototypes of the feature tap in both spaces the losses use, over the same voxels.

    ``pre`` averages the pre-activation features F (signed: the affinity space that can tell organs apart,
    METHOD.md §3), ``post`` averages ReLU(F) (what the classifier reads; DAPD aligns these). Means of the
    two spaces are kept apart because the mean of a ReLU is not the ReLU of a mean. ``pre`` is None for
    bundles written before it was stored.
    """

    def __init__(self, post: GlobalPrototypes, pre: GlobalPrototypes | None) -> None:
        if pre is not None and (pre.means.shape != post.means.shape or not torch.equal(pre.counts, post.counts)):
            raise ValueError(f"pre-activation prototypes {tuple(pre.means.shape)} do not match the post-activation ones {tuple(post.means.shape)}")
        self.post = post
        self.pre = pre

    @classmethod
    def empty(cls, num_classes: int, channels: int) -> FeaturePrototypes:
        return cls(GlobalPrototypes(num_classes, channels), GlobalPrototypes(num_classes, channels))

    @property
    def num_classes(self) -> int:
        return self.post.num_classes

    def update_from_batch(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch of pre-activation features (B, K, D', H', W') with labels (B, D, H, W)."""
        if self.pre is None:
            raise ValueError("these prototypes have no pre-activation means to update")
        self.pre.update_from_batch(features, labels)
        self.post.update_from_batch(torch.relu(features), labels)

    def spaces(self) -> tuple[GlobalPrototypes, ...]:
        return (self.post,) if self.pre is None else (self.post, self.pre)

    def copy_rows_from(self, other: FeaturePrototypes, rows: slice) -> None:
        """Take ``rows`` (means and counts, both spaces) from ``other``, e.g. the old organs' stored ones."""
        for mine, theirs in ((self.post, other.post), (self.pre, other.pre)):
            if mine is None:
                continue
            if theirs is None:
                raise ValueError("the other prototypes have no pre-activation means to copy")
            mine.means[rows] = theirs.means[rows]
            mine.counts[rows] = theirs.counts[rows]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        tensors = self.post.to_tensors()
        if self.pre is not None:
            tensors[PRE_ACTIVATION_KEY] = self.pre.means.clone().contiguous()
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> FeaturePrototypes:
        post = GlobalPrototypes.from_tensors(tensors)
        pre_means = tensors.get(PRE_ACTIVATION_KEY)
        if pre_means is None:
            return cls(post, None)
        if tuple(pre_means.shape) != tuple(post.means.shape) or not pre_means.is_floating_point():
            raise BundleError(f"pre-activation prototypes {tuple(pre_means.shape)} do not fit the prototypes {tuple(post.means.shape)}",
                              "the bundle's prototypes file is damaged; roll back to the previous bundle version or re-run the step that wrote it")
        return cls(post, GlobalPrototypes.from_tensors({"prototypes": pre_means, "counts": post.counts}))
