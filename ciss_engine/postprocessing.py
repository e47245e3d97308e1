"""What a label map goes through after the argmax: air taken out of the organs that never hold any, then each
one-piece organ kept as its large connected pieces.

A network that sees a patch at a time paints an organ now and then far from where it is (liver in the thigh
muscles, kidney in the shoulders); for an organ that is one connected structure in every patient, every piece
much smaller than the largest is such an error. Measured on the real-CT step (benchmarks/RESULTS.md (o)): organ
voxels more than 30 mm from any labelled organ 44,137 → 1,431, liver 0.66 → 0.87, spleen 0.80 → 0.91. Organs the catalog does not
know as one piece (bowel, thyroid, custom organs, imported classes it does not name) are left as predicted, and so
is every organ of a model imported from another tool (inference.Segmenter).

A model trained on one patient's abdomen painted kidney_left into the other patient's lung base, over voxels of median
−860 to −892 HU (benchmarks/RESULTS.md (bc)); no voxel of a labelled spleen, kidney, gallbladder, pancreas or liver on
the project's real CTs lies below −321 HU. Voxels darker than ``AIR_HU`` are therefore not left to such organs (the catalog's
``never_air``): they become background before the pieces are counted, so a stray piece in air cannot outgrow the
true organ and be kept instead of it. It needs the CT in HU on the label's grid, which ``ciss segment`` has; the
forgetting guard and a step's new-organ report compare masks on the network grid, where the engine's window has
clipped everything below −175 HU, and keep the large pieces only.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .registry import ClassRegistry, never_air_organ_names, one_piece_organ_names

if TYPE_CHECKING:
    from .bundle import BundleVersion

# Voxels that touch by a face, an edge or a corner are one piece: a thin organ (the esophagus) seen on a coarse
# grid is connected only diagonally in places.
EVERY_NEIGHBOUR = np.ones((3, 3, 3), bool)
# A piece at least this share of the largest one's voxels stays too. With two pieces of similar size the network
# cannot tell which one is the organ: keeping only the larger deleted the true liver in the demo (DSC 0.48 → 0.00,
# its wrong piece 60,446 voxels against the true one's 59,630; benchmarks/RESULTS.md (o)).
KEPT_SHARE_OF_LARGEST = 0.5
# Half-way between air (−1000 HU) and water (0 HU): lung parenchyma lies below it, every soft tissue and fat above.
AIR_HU = -500.0


def _labels_of(registry: ClassRegistry, names: frozenset[str]) -> list[int]:
    return [organ.label for organ in registry.organs if organ.name in names]


def one_piece_labels(registry: ClassRegistry) -> list[int]:
    """The labels of ``registry``'s organs that the catalog knows as one connected structure."""
    return _labels_of(registry, one_piece_organ_names())


def never_air_labels(registry: ClassRegistry) -> list[int]:
    """The labels of ``registry``'s organs that the catalog knows never to hold air."""
    return _labels_of(registry, never_air_organ_names())


def without_air(label: np.ndarray, hounsfield: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """A copy of ``label`` in which each of ``labels`` loses the voxels below ``AIR_HU`` in ``hounsfield`` (the CT on
    the same grid) to background."""
    cleared = label.copy()
    cleared[np.isin(label, labels) & (hounsfield < AIR_HU)] = 0
    return cleared


def _trained_here(version: BundleVersion) -> bool:
    """False for a model imported from another tool and the steps grown from it: a site has validated that tool's raw
    output, and its own pipeline decides its postprocessing."""
    return version.settings.source is None


def postprocessed_labels(version: BundleVersion, registry: ClassRegistry | None = None) -> list[int]:
    """The labels that ``version``'s segmentations keep in large pieces: its one-piece organs, or none for a model
    imported from another tool and the steps grown from it. ``registry``: the organs of a step being grown from
    ``version`` (its new organs included) instead of its own."""
    return one_piece_labels(registry or version.registry) if _trained_here(version) else []


@dataclasses.dataclass(frozen=True)
class Postprocessing:
    """What ``ciss segment`` does to a label map after the argmax, in this order: air cleared from ``never_air``, then
    the large pieces of ``one_piece`` kept. Empty: the argmax as it is."""

    never_air: tuple[int, ...] = ()
    one_piece: tuple[int, ...] = ()

    @classmethod
    def of(cls, version: BundleVersion) -> Postprocessing:
        """``version``'s postprocessing: none for an imported model and the steps grown from it."""
        if not _trained_here(version):
            return cls()
        return cls(tuple(never_air_labels(version.registry)), tuple(one_piece_labels(version.registry)))

    def applied(self, label: np.ndarray, hounsfield: np.ndarray) -> np.ndarray:
        """``label`` postprocessed; ``hounsfield``: the CT on the same grid."""
        if self.never_air:
            label = without_air(label, hounsfield, self.never_air)
        return keep_largest_pieces(label, self.one_piece)


def keep_largest_pieces(label: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """A copy of ``label`` (X, Y, Z) in which each of ``labels`` keeps its largest piece and every piece at least
    ``KEPT_SHARE_OF_LARGEST`` of its size; its other pieces become background."""
    kept = label.copy()
    for value in labels:
        pieces, count = ndimage.label(label == value, structure=EVERY_NEIGHBOUR)
        if count < 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        dropped = np.flatnonzero(sizes < KEPT_SHARE_OF_LARGEST * sizes.max()) + 1
        kept[np.isin(pieces, dropped)] = 0
    return kept
