"""Benchmark (am): is the contrast phase what keeps one real patient's model from the other patient's organs?

Takes the two single-CT bases of ``real_ct_base.py --runs ts_abdpelvis,chest_4x`` and segments each on the other
patient's CT twice: as it is, and with that CT's spleen and kidneys moved to the training CT's median HU (their
reference labels say where; the offset map smoothed by a Gaussian of σ one voxel, as organ contrast blends its
rims). An oracle no site has: if the phase decided, the moved organs would be found. DSC on the network grid,
argmax without postprocessing, and the mean probability the network gives background inside each organ.

Usage: python benchmarks/phase_swap.py OUTPUT_OF_REAL_CT_BASE
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.metrics import compute_dice
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.inference import load_network, sliding_window_outputs  # noqa: E402
from ciss_engine.preprocessing import PreprocessingConfig, image_to_network, label_to_network  # noqa: E402

DATA = Path(os.environ.get("CISS_DATA", ROOT.parent / "shared" / "data")) / "ct"
MOVED = {"spleen": 1, "kidney_right": 2, "kidney_left": 3}
OTHER = {"ts_abdpelvis": "chest_4x", "chest_4x": "ts_abdpelvis"}


def load_ct(ct: str) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    image = nib.load(str(DATA / ct / "image.nii.gz"))
    return image, np.asarray(image.dataobj).astype(np.float32), np.asarray(nib.load(str(DATA / ct / "label_seg8.nii.gz")).dataobj)


def organ_medians(ct: str) -> dict[int, float]:
    _, hu, label = load_ct(ct)
    return {value: float(np.median(hu[label == value])) for value in MOVED.values()}


def with_organs_at(ct: str, medians: dict[int, float]) -> nib.Nifti1Image:
    """The CT with each moved organ shifted so that its median HU is ``medians``'."""
    image, hu, label = load_ct(ct)
    offsets = np.zeros_like(hu)
    for value, median in medians.items():
        offsets[label == value] = median - np.median(hu[label == value])
    return nib.Nifti1Image(hu + ndimage.gaussian_filter(offsets, 1.0), image.affine)


class GridScorer:
    """One bundle's network and one CT's reference on the network grid, loaded once for every image scored."""

    def __init__(self, bundle: Path, ct: str) -> None:
        self.version = Bundle(bundle).load()
        self.config = PreprocessingConfig.from_json(self.version.settings.preprocessing)
        self.network = load_network(self.version, torch.device("cpu"))
        reference_image, _, reference = load_ct(ct)
        self.truth = torch.as_tensor(np.asarray(label_to_network(reference_image, reference, self.config)))[0]

    def probabilities(self, image: nib.Nifti1Image) -> torch.Tensor:
        """The network's class probabilities (C, X, Y, Z) for ``image`` on the network grid."""
        return self.probabilities_on_grid(image_to_network(image, self.config))

    def probabilities_on_grid(self, tensor: torch.Tensor) -> torch.Tensor:
        """The same for an image already on the network grid and in its intensities ((1, X, Y, Z))."""
        logits, _ = sliding_window_outputs(self.network, tensor[None], patch_size=self.config.patch_size, device=torch.device("cpu"))
        return logits.softmax(1)[0]

    def score(self, image: nib.Nifti1Image) -> dict[str, tuple[float, float]]:
        """Per moved organ: DSC of the argmax, and the mean probability of background inside the organ (near 1: the
        network sees no organ there at all, not a near miss)."""
        probabilities = self.probabilities(image)
        dice = self.dice(probabilities.argmax(0))
        return {name: (dice[name], float(probabilities[0][self.truth == value].mean())) for name, value in MOVED.items()}

    def dice(self, predicted: torch.Tensor) -> dict[str, float]:
        """DSC of each moved organ of a label map on the network grid against the reference (MONAI's compute_dice)."""
        return {name: float(compute_dice((predicted == self.version.registry.by_name(name).label)[None, None], (self.truth == value)[None, None],
                                         include_background=True)[0, 0])
                for name, value in MOVED.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="real_ct_base.py's output folder with base_ts_abdpelvis and base_chest_4x")
    args = parser.parse_args()
    print("| trained on | scored on | its spleen and kidneys | " + " | ".join(MOVED) + " |")
    print("|---|---|---|" + "---:|" * len(MOVED))
    for trained_on, scored_on in OTHER.items():
        scorer = GridScorer(args.output / f"base_{trained_on}", scored_on)
        for label, image in (("as they are", load_ct(scored_on)[0]), (f"at {trained_on}'s median HU", with_organs_at(scored_on, organ_medians(trained_on)))):
            scores = scorer.score(image)
            print(f"| {trained_on} | {scored_on} | {label} | " + " | ".join(f"{dice:.2f} (background {background:.2f})" for dice, background in scores.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
