"""Plain helpers of the Slicer logic tests (fixtures live in conftest.py).

A separate module name: two ``conftest`` modules (this folder's and ``Testing/``'s) would shadow
each other when imported by name.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from ciss_engine.api.bundle_record import VersionSummary
from ciss_engine.registry import ClassRegistry
from CISSegmentationLib.bundle_reader import BundleInfo

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Shared real CTs: ``CISS_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("CISS_DATA", REPO_ROOT.parent / "shared" / "data"))


def engine_env() -> dict[str, str]:
    """Environment in which ``python -m ciss_engine`` finds the engine of this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def bundle_info(path: Path, organ_names: list[str]) -> BundleInfo:
    """A one-version bundle as the panel lists it, for logic that needs only its organs (no engine, no files)."""
    registry = ClassRegistry.from_names([(name, None) for name in organ_names])
    return BundleInfo(path, "1.0.0", "1.0.0", (VersionSummary("1.0.0", "current", tuple(organ_names)),), registry, ())


def oblique_lps_affine() -> np.ndarray:
    """30° about S, both in-plane axes flipped (LPS-like), anisotropic spacing, odd origin."""
    angle = np.deg2rad(30.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, -1.0, 1.0]) @ np.diag([0.7, 0.8, 1.25])
    affine[:3, 3] = [10.3, -20.1, 5.7]
    return affine


@dataclasses.dataclass(frozen=True)
class TinyPhantom:
    """A small CT with two box organs whose voxel counts are known by construction."""

    image: np.ndarray  # (i, j, k) int16 HU
    labels: np.ndarray  # (i, j, k) 0 background, 1 and 3 organs
    affine: np.ndarray
    counts: dict[int, int]


def make_tiny_phantom(affine: np.ndarray | None = None) -> TinyPhantom:
    shape = (20, 16, 12)
    image = np.full(shape, -1000, dtype=np.int16)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:6, 3:8, 1:7] = 1  # 4 × 5 × 6 = 120 voxels
    labels[10:17, 9:12, 4:9] = 3  # 7 × 3 × 5 = 105 voxels
    image[labels == 1] = 60
    image[labels == 3] = 30
    default = np.diag([1.5, 2.0, 2.5, 1.0])
    default[:3, 3] = [-15.0, 8.0, -30.0]
    return TinyPhantom(image=image, labels=labels, affine=default if affine is None else affine, counts={1: 120, 3: 105})


