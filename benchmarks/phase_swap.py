"""Benchmark (am): is the contrast phase what keeps one real patient's model from the other patient's organs?

Takes the two single-CT bases of ``real_ct_base.py --runs ts_abdpelvis,chest_4x`` and segments each on the other
patient's CT twice: as it is, and with that CT's spleen and kidneys moved to the training CT's median HU (their
reference labels say where; the offset map smoothed by a Gaussian of σ one voxel, as organ contrast blends its
rims). An oracle no site has: if the phase decided, the moved organs would be found. DSC on the network grid,
argmax without postprocessing.

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


def dice_on_grid(bundle: Path, image: nib.Nifti1Image, ct: str) -> dict[str, float]:
    version = Bundle(bundle).load()
    config = PreprocessingConfig.from_json(version.settings.preprocessing)
    network = load_network(version, torch.device("cpu"))
    reference_image, _, reference = load_ct(ct)
    truth = torch.as_tensor(np.asarray(label_to_network(reference_image, reference, config)))[0]
    logits, _ = sliding_window_outputs(network, image_to_network(image, config)[None], patch_size=config.patch_size, device=torch.device("cpu"))
    predicted = logits.argmax(1)[0]
    scores = {}
    for name, value in MOVED.items():
        guess, labelled = predicted == version.registry.by_name(name).label, truth == value
        scores[name] = float(2 * (guess & labelled).sum() / (guess.sum() + labelled.sum()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="real_ct_base.py's output folder with base_ts_abdpelvis and base_chest_4x")
    args = parser.parse_args()
    print("| trained on | scored on | its spleen and kidneys | " + " | ".join(MOVED) + " |")
    print("|---|---|---|" + "---:|" * len(MOVED))
    for trained_on, scored_on in OTHER.items():
        bundle = args.output / f"base_{trained_on}"
        for label, image in (("as they are", load_ct(scored_on)[0]), (f"at {trained_on}'s median HU", with_organs_at(scored_on, organ_medians(trained_on)))):
            scores = dice_on_grid(bundle, image, scored_on)
            print(f"| {trained_on} | {scored_on} | {label} | " + " | ".join(f"{scores[name]:.2f}" for name in MOVED) + " |", flush=True)


if __name__ == "__main__":
    main()
