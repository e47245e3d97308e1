"""What a version predicts on one organ's labelled voxels, and where else it paints that organ (RESULTS.md (t)).

Tells a step that never started on an organ (low probability on its voxels, argmax background) from one that learned
it as a blob (its voxels covered, many more painted around them). On the network grid, before postprocessing.
With ``--parent X.Y.Z`` (an old organ): what that version of the same bundle said where this one paints the organ
outside its label, which tells forgetting (recall lost) from spreading (the step paints where the parent did not).

Usage: python benchmarks/organ_on_its_voxels.py BUNDLE [BUNDLE…] --ct DIR --organ NAME [--value V] [--version X.Y.Z]
       [--parent X.Y.Z]
(DIR holds image.nii.gz and label_seg8.nii.gz; V is the organ's value there, default its value in the shared CTs.)
"""
from __future__ import annotations

import argparse
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
from ciss_engine.postprocessing import EVERY_NEIGHBOUR  # noqa: E402
from ciss_engine.preprocessing import PreprocessingConfig, image_to_network, label_to_network  # noqa: E402
from real_ct_base import NEW_ORGANS, ORGANS  # noqa: E402  (this folder: the shared CTs' label values)


def probabilities_on_grid(bundle: Path, version: str | None, ct: Path, value: int) -> tuple[torch.Tensor, torch.Tensor, list[str], tuple[float, ...]]:
    """The version's softmax on the network grid (classes first), the organ's labelled voxels there, the class names, the spacing."""
    loaded = Bundle.open_or_raise(bundle).load(version)
    config = PreprocessingConfig.from_json(loaded.settings.preprocessing)
    image, label = nib.load(str(ct / "image.nii.gz")), nib.load(str(ct / "label_seg8.nii.gz"))
    grid = image_to_network(image, config)
    reference = label_to_network(label, np.asarray(label.dataobj), config).as_tensor()[0] == value
    logits, _ = sliding_window_outputs(load_network(loaded, torch.device("cpu")), grid[None], patch_size=config.patch_size, device=torch.device("cpu"),
                                       overlap=config.window_overlap, blend=config.window_blend, padding=config.window_padding,
                                       mirroring_axes=config.window_mirroring_axes)
    return logits[0].float().softmax(0), reference, ["background", *loaded.registry.names], tuple(config.spacing_mm)


def _counts(argmax: torch.Tensor, names: list[str]) -> str:
    counts = torch.bincount(argmax, minlength=len(names))
    return ", ".join(f"{names[c]} {int(counts[c])}" for c in counts.argsort(descending=True)[:3] if counts[c])


def _mean_probabilities(probabilities: torch.Tensor, where: torch.Tensor, names: list[str]) -> str:
    means = probabilities[:, where].mean(1)
    return ", ".join(f"{names[c]} {float(means[c]):.2f}" for c in means.argsort(descending=True)[:3])


def report(bundle: Path, version: str | None, ct: Path, organ: str, value: int, parent: str | None = None) -> str:
    probabilities, reference, names, spacing = probabilities_on_grid(bundle, version, ct, value)
    channel = names.index(organ)
    predicted = probabilities.argmax(0)
    painted = (predicted == channel).numpy()
    truth = reference.numpy()
    distance_mm = ndimage.distance_transform_edt(~truth, sampling=spacing)
    false = painted & ~truth
    pieces, _ = ndimage.label(painted, structure=EVERY_NEIGHBOUR)
    sizes = sorted(np.bincount(pieces.ravel())[1:].tolist(), reverse=True)[:3]
    line = (f"{bundle.name} {version or 'current'}, {organ} on {ct.name}: {int(truth.sum())} labelled voxels; mean p({organ}) there "
            f"{float(probabilities[channel][reference].mean()):.3f}; argmax there: {_counts(predicted[reference], names)}; painted "
            f"{int(painted.sum())} voxels, {int(false.sum())} outside the label ({int((false & (distance_mm <= 9)).sum())} within 9 mm, "
            f"{int((false & (distance_mm <= 30)).sum())} within 30 mm); largest pieces {sizes}")
    if parent is None or not false.any():
        return line
    before, _, parent_names, _ = probabilities_on_grid(bundle, parent, ct, value)
    outside = torch.from_numpy(false)
    return (f"{line}\n  on those {int(false.sum())} voxels: this version's mean p {_mean_probabilities(probabilities, outside, names)}; "
            f"parent {parent}'s argmax {_counts(before.argmax(0)[outside], parent_names)}, mean p {_mean_probabilities(before, outside, parent_names)}; "
            f"parent {parent} painted {int((before.argmax(0) == parent_names.index(organ)).sum())} voxels, found "
            f"{int(((before.argmax(0) == parent_names.index(organ)) & reference).sum())} of the label, this version {int((predicted == channel)[reference].sum())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--ct", type=Path, required=True)
    parser.add_argument("--organ", required=True)
    parser.add_argument("--value", type=int, default=None)
    parser.add_argument("--version", default=None)
    parser.add_argument("--parent", default=None, help="a version of the same bundle to compare with where this one paints the organ outside its label")
    args = parser.parse_args()
    value = args.value if args.value is not None else {**ORGANS, **NEW_ORGANS}[args.organ]
    for bundle in args.bundles:
        print(report(bundle, args.version, args.ct, args.organ, value, args.parent))


if __name__ == "__main__":
    main()
