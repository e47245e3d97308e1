"""The replay buffer of domain steps (Dual-Alignment, METHOD.md §6): per-class bottleneck feature vectors.

It holds, for each class, at most a few hundred feature vectors of the network's coarsest encoder stage (each
one summarises a 8×8×8-voxel cell after four stages of convolutions), and the class id of each vector. It holds
no voxels, no image patches and no positions, so no CT can be rebuilt from it. It is stored in a bundle version
as ``models/replay_buffer.safetensors`` (tensors only: loading runs no code) and checksummed like the weights.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .errors import BundleError

VECTORS_KEY, CLASSES_KEY = "replay_vectors", "replay_classes"
DAMAGED_HINT = "the bundle's replay buffer is damaged; roll back to another version (ciss rollback) or restore the bundle from a backup"


@dataclasses.dataclass(frozen=True)
class ReplayBuffer:
    """``vectors`` (N, C) float32 and their ``classes`` (N,) int64, grouped by class in ascending order."""

    vectors: torch.Tensor
    classes: torch.Tensor

    def rows_of(self, class_id: int) -> torch.Tensor:
        return self.vectors[self.classes == class_id]

    def class_sizes(self, names: list[str]) -> dict[str, int]:
        """Vectors per class by name (``names[0]`` is the background): what the log and the history report."""
        counts = torch.bincount(self.classes, minlength=len(names)).tolist()
        return {name: int(count) for name, count in zip(names, counts) if count}

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {VECTORS_KEY: self.vectors.float().contiguous(), CLASSES_KEY: self.classes.long().contiguous()}

    @classmethod
    def from_tensors_or_raise(cls, tensors: dict[str, torch.Tensor], *, num_classes: int, path: Path) -> ReplayBuffer:
        """The buffer of a version's safetensors file, checked: 2-D finite vectors, one class id in range each."""
        vectors, classes = tensors.get(VECTORS_KEY), tensors.get(CLASSES_KEY)
        if vectors is None or classes is None:
            problem = f"it holds {sorted(tensors)}, not {VECTORS_KEY!r} and {CLASSES_KEY!r}"
        elif vectors.dim() != 2 or not vectors.is_floating_point() or not bool(vectors.isfinite().all()):
            problem = f"its vectors have shape {tuple(vectors.shape)} ({vectors.dtype}), not finite rows of floats"
        elif tuple(classes.shape) != vectors.shape[:1] or classes.is_floating_point() or bool(((classes < 0) | (classes >= num_classes)).any()):
            problem = f"its class ids {tuple(classes.shape)} ({classes.dtype}) are not one id in 0..{num_classes - 1} per vector"
        else:
            return cls(vectors.float(), classes.long())
        raise BundleError(f"{path} is damaged: {problem}", DAMAGED_HINT)

    @classmethod
    def drawn(cls, vectors: torch.Tensor, classes: torch.Tensor, *, per_class: int, seed: int) -> ReplayBuffer:
        """At most ``per_class`` rows of each class, drawn without replacement: the same seed and rows give the
        same buffer (each class has its own generator, so one class's count does not move another's draw)."""
        chosen_vectors, chosen_classes = [], []
        for class_id in torch.unique(classes).tolist():
            rows = vectors[classes == class_id]
            generator = torch.Generator().manual_seed(seed * 1_000_003 + int(class_id))
            keep = torch.randperm(rows.shape[0], generator=generator)[:per_class].sort().values
            chosen_vectors.append(rows[keep])
            chosen_classes.append(torch.full((keep.numel(),), int(class_id), dtype=torch.long))
        if not chosen_vectors:
            return cls(vectors.new_zeros((0, vectors.shape[1])).float(), torch.zeros(0, dtype=torch.long))
        return cls(torch.cat(chosen_vectors).float(), torch.cat(chosen_classes))

    def merged_with(self, newer: ReplayBuffer, *, per_class: int, seed: int) -> ReplayBuffer:
        """The next step's buffer: drawn from this one (earlier sites) and ``newer`` (this step's site) together,
        so each step keeps about half of what the sites before it left."""
        return ReplayBuffer.drawn(torch.cat([self.vectors, newer.vectors]), torch.cat([self.classes, newer.classes]), per_class=per_class, seed=seed)
