"""Training cases prepared once on the network grid and kept in memory for patch sampling."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from monai.data import MetaTensor

from ..errors import InputError
from ..events import EventSink
from ..imaging import check_same_grid_or_raise, label_values_or_raise, load_volume_or_raise
from ..preprocessing import PreprocessingConfig, image_to_network, label_to_network

if TYPE_CHECKING:
    from ..registry import ClassRegistry


@dataclasses.dataclass
class PreparedCase:
    """One CT and its target label map on the network grid; ``sampling_label`` steers patch centres; ``synthetic``: a
    phantom patient drawn beside the site's CTs (synthetic_cases.py), sampled at its own share."""

    name: str
    image: MetaTensor
    label: MetaTensor
    sha256: str
    sampling_label: MetaTensor | None = None
    synthetic: bool = False


def file_sha256(path: Path) -> str:
    """Content hash of a file or of a DICOM folder's files, for lineage and checkpoint matching."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def case_sha256(image: Path, label: Path) -> str:
    """A training case's identity in lineage and run fingerprints: its CT's and its label map's content."""
    return file_sha256(Path(image)) + ":" + file_sha256(Path(label))


def organs_per_case(cases: Sequence[PreparedCase], registry: ClassRegistry) -> list[list[str]]:
    """The organs of ``registry`` each case's label map holds (on the network grid, as training saw it): the run's
    other organs it taught as absent from that CT (forgetting_guard.organs_known_absent)."""
    present = [set(np.unique(case.label.as_tensor().numpy()).tolist()) for case in cases]
    return [[organ.name for organ in registry.organs if organ.label in labels] for labels in present]


def remap_label(data: np.ndarray, value_to_class: dict[int, int]) -> np.ndarray:
    """Map input label values to bundle class ids; values not listed become background."""
    lookup = np.zeros(256, dtype=np.uint8)
    for value, class_id in value_to_class.items():
        lookup[value] = class_id
    return lookup[data]


def prepare_cases(
    images: Sequence[Path],
    labels: Sequence[Path],
    *,
    value_to_class: dict[int, int],
    other_labels: str,
    config: PreprocessingConfig,
    sink: EventSink,
) -> list[PreparedCase]:
    """Load, check and resample each CT/label pair; every organ of the run must occur in some case.

    ``other_labels``: "error" refuses label values that are not organs of the run; "background" maps
    them to 0 (how the paper's protocol keeps only one step's classes).
    """
    if len(images) != len(labels):
        raise InputError(f"{len(images)} CTs but {len(labels)} label maps", "give one --labels file for each --images file, in the same order")
    if not images:
        raise InputError("no training cases given", "pass at least one CT with -i and its label map with -l")
    allowed = value_to_class.keys() if other_labels == "error" else range(1, 256)
    fix = "give only the organs of this run, or pass --other-labels background to treat other values as background"
    cases: list[PreparedCase] = []
    seen: set[int] = set()
    for index, (image_path, label_path) in enumerate(zip(images, labels)):
        sink.progress("prepare", index, len(images))
        image = load_volume_or_raise(image_path, role="CT", sink=sink)
        label = load_volume_or_raise(label_path, role="label")
        check_same_grid_or_raise(image, label, Path(image_path), Path(label_path))
        data = remap_label(label_values_or_raise(label, Path(label_path), allowed=allowed, fix=fix), value_to_class)
        present = set(np.unique(data).tolist()) - {0}
        if not present:
            raise InputError(
                f"label {label_path} holds none of this run's organs (values {sorted(value_to_class)})",
                "annotate at least one organ in this label map, or leave the case out",
            )
        seen |= present
        cases.append(
            PreparedCase(
                name=Path(image_path).name,
                image=image_to_network(image, config),
                label=label_to_network(label, data, config),
                sha256=case_sha256(image_path, label_path),
            )
        )
    sink.progress("prepare", len(images), len(images))
    missing = sorted(set(value_to_class.values()) - seen)
    if missing:
        classes = {label: value for value, label in value_to_class.items()}
        files = ", ".join(str(p) for p in labels)
        raise InputError(f"organ classes {missing} (label values {[classes[m] for m in missing]}) have no voxel in any label map: {files}",
                         "annotate each organ of the run in at least one case, or check the label values given for the organs")
    return cases
