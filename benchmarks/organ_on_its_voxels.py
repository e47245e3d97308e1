"""What a version predicts on one organ's labelled voxels, and where else it paints that organ (RESULTS.md (t)).

Tells a step that never started on an organ (low probability on its voxels, argmax background) from one that learned
it as a blob (its voxels covered, many more painted around them). On the network grid, before postprocessing.

Usage: python benchmarks/organ_on_its_voxels.py BUNDLE [BUNDLE…] --ct DIR --organ NAME [--value V] [--version X.Y.Z]
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


def report(bundle: Path, version: str | None, ct: Path, organ: str, value: int) -> str:
    loaded = Bundle.open_or_raise(bundle).load(version)
    config = PreprocessingConfig.from_json(loaded.settings.preprocessing)
    image, label = nib.load(str(ct / "image.nii.gz")), nib.load(str(ct / "label_seg8.nii.gz"))
    grid = image_to_network(image, config)
    reference = label_to_network(label, np.asarray(label.dataobj), config).as_tensor()[0] == value
    logits, _ = sliding_window_outputs(load_network(loaded, torch.device("cpu")), grid[None], patch_size=config.patch_size, device=torch.device("cpu"),
                                       overlap=config.window_overlap, blend=config.window_blend, padding=config.window_padding,
                                       mirroring_axes=config.window_mirroring_axes)
    probabilities = logits[0].float().softmax(0)
    channel = loaded.registry.by_name(organ).label
    predicted = probabilities.argmax(0)
    painted = (predicted == channel).numpy()
    truth = reference.numpy()
    distance_mm = ndimage.distance_transform_edt(~truth, sampling=config.spacing_mm)
    false = painted & ~truth
    pieces, _ = ndimage.label(painted, structure=EVERY_NEIGHBOUR)
    sizes = sorted(np.bincount(pieces.ravel())[1:].tolist(), reverse=True)[:3]
    names = ["background", *loaded.registry.names]
    argmax_there = torch.bincount(predicted[reference], minlength=len(names))
    most = ", ".join(f"{names[c]} {int(argmax_there[c])}" for c in argmax_there.argsort(descending=True)[:3] if argmax_there[c])
    return (f"{bundle.name} {loaded.version}, {organ} on {ct.name}: {int(truth.sum())} labelled voxels; mean p({organ}) there "
            f"{float(probabilities[channel][reference].mean()):.3f}; argmax there: {most}; painted {int(painted.sum())} voxels, "
            f"{int(false.sum())} outside the label ({int((false & (distance_mm <= 9)).sum())} within 9 mm, "
            f"{int((false & (distance_mm <= 30)).sum())} within 30 mm); largest pieces {sizes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--ct", type=Path, required=True)
    parser.add_argument("--organ", required=True)
    parser.add_argument("--value", type=int, default=None)
    parser.add_argument("--version", default=None)
    args = parser.parse_args()
    value = args.value if args.value is not None else {**ORGANS, **NEW_ORGANS}[args.organ]
    for bundle in args.bundles:
        print(report(bundle, args.version, args.ct, args.organ, value))


if __name__ == "__main__":
    main()
