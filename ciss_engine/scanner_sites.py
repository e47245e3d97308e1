"""Phantom "scanners" for the domain-incremental protocol: the same anatomy as another site's CT shows it.

Each site changes what differs between scanners and protocols, never the anatomy or the labels: HU scale and
offset (calibration, kVp), noise (dose), slice thickness (blur along the last axis) and contrast phase (each
perfused organ enhanced by its own amount). Site 1 is the phantom as generated, a non-contrast CT: the site the
base model knows. Calibration, noise and blur lie within what training augmentation already spans; a contrast
phase does not: it reorders the organs' intensities (kidneys brighter than liver, spleen brighter than muscle),
which no global intensity transform can, so a model must learn it and can forget the phase it knew.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .atomic import ensure_writable_dir, write_atomic

# HU added per organ (seg8 values: spleen 1, kidneys 2 and 3, pancreas 6, liver 7) in two contrast phases, after
# typical enhancement of abdominal CT: the portal-venous phase lifts liver and spleen alike, the arterial phase the
# kidneys' cortex and the spleen most. Gallbladder, esophagus and stomach wall barely change.
PORTAL_VENOUS = ((1, 60.0), (2, 120.0), (3, 120.0), (6, 45.0), (7, 55.0))
ARTERIAL = ((1, 110.0), (2, 190.0), (3, 190.0), (6, 80.0), (7, 20.0))


@dataclasses.dataclass(frozen=True)
class ScannerSite:
    name: str
    hu_scale: float = 1.0
    hu_offset: float = 0.0
    noise_hu: float = 0.0
    slice_blur_voxels: float = 0.0  # Gaussian σ along the last axis: thicker slices
    enhancement_hu: tuple[tuple[int, float], ...] = ()  # (seg8 value, HU added inside that organ): a contrast phase

    def apply(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` (HU) as this site shows it; ``label`` (seg8) says where the enhancing organs are."""
        shown = image.astype(np.float32)
        for value, added_hu in self.enhancement_hu:
            shown[label == value] += np.float32(added_hu)
        if self.slice_blur_voxels > 0:
            shown = ndimage.gaussian_filter1d(shown, self.slice_blur_voxels, axis=2)
        shown = shown * np.float32(self.hu_scale) + np.float32(self.hu_offset)
        if self.noise_hu > 0:
            shown += np.float32(self.noise_hu) * rng.standard_normal(shown.shape, dtype=np.float32)
        return shown


# Site 1 as generated (non-contrast); site 2 a low-dose scanner calibrated differently, portal-venous phase; site 3
# thick slices in the arterial phase.
SITES = (
    ScannerSite("site_1"),
    ScannerSite("site_2", hu_scale=1.05, hu_offset=50.0, noise_hu=25.0, enhancement_hu=PORTAL_VENOUS),
    ScannerSite("site_3", hu_scale=0.9, hu_offset=-30.0, slice_blur_voxels=1.5, enhancement_hu=ARTERIAL),
)


def write_site_cases(cases: Sequence[Path], site: ScannerSite, out_dir: Path, seed: int) -> list[Path]:
    """Each case folder (image.nii.gz, label_seg8.nii.gz) as ``site`` shows it, under ``out_dir``; labels unchanged."""
    rng = np.random.default_rng([seed, *site.name.encode()])
    folders = []
    for case in cases:
        folder = ensure_writable_dir(Path(out_dir) / case.name)
        ct, label = nib.load(str(case / "image.nii.gz")), nib.load(str(case / "label_seg8.nii.gz"))
        shown = site.apply(np.asarray(ct.dataobj), np.asarray(label.dataobj), rng)
        write_atomic(folder / "image.nii.gz", lambda path, image=nib.Nifti1Image(shown, ct.affine): nib.save(image, str(path)))
        write_atomic(folder / "label_seg8.nii.gz", lambda path, label=label: nib.save(label, str(path)))
        folders.append(folder)
    return folders
