"""Benchmark (ax): intensity test-time augmentation for a model on another patient's CT (issue 14's transfer goal).

A base trained on one real CT (``real_ct_base.py --runs ts_abdpelvis`` or ``chest_4x``) segments CTs with its softmax
averaged over the input as it is and intensity-transformed copies (gamma, contrast about the mean, a shift, within
the ranges its training augmentation draws); each organ is kept as ``ciss segment`` keeps it (large pieces). DSC on
the network grid per organ the CT labels, for each single transform and for each family averaged with the input.
Spatial transforms are left out: the network never saw a mirrored patient, and left and right are organs here.

Usage: python benchmarks/transfer_tta.py BUNDLE CT_NAME…  (CTs under $CISS_DATA/ct, default ../shared/data/ct)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.metrics import compute_dice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.inference import load_network, sliding_window_outputs  # noqa: E402
from ciss_engine.postprocessing import keep_largest_pieces, one_piece_labels  # noqa: E402
from ciss_engine.preprocessing import PreprocessingConfig, image_to_network, label_to_network  # noqa: E402

DATA = Path(os.environ.get("CISS_DATA", ROOT.parent / "shared" / "data")) / "ct"
REFERENCE_VALUES = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4}
TRANSFORMS = {
    "gamma 0.8": lambda t: t.clamp(0, 1) ** 0.8, "gamma 1.25": lambda t: t.clamp(0, 1) ** 1.25,
    "contrast 0.85": lambda t: (t - t.mean()) * 0.85 + t.mean(), "contrast 1.15": lambda t: (t - t.mean()) * 1.15 + t.mean(),
    "shift -0.05": lambda t: t - 0.05, "shift +0.05": lambda t: t + 0.05,
}
FAMILIES = {"gamma": ["gamma 0.8", "gamma 1.25"], "contrast": ["contrast 0.85", "contrast 1.15"], "shift": ["shift -0.05", "shift +0.05"],
            "all six": list(TRANSFORMS)}


def main() -> None:
    bundle, cts = Path(sys.argv[1]), sys.argv[2:]
    version = Bundle.open_or_raise(bundle).load()
    config = PreprocessingConfig.from_json(version.settings.preprocessing)
    network = load_network(version, torch.device("cpu"))
    one_piece = one_piece_labels(version.registry)

    def probabilities(image: torch.Tensor) -> torch.Tensor:
        logits, _ = sliding_window_outputs(network, image[None], patch_size=config.patch_size, device=torch.device("cpu"),
                                           overlap=config.window_overlap, blend=config.window_blend, padding=config.window_padding)
        return logits[0].softmax(0)

    print("| model | CT | inputs averaged | " + " | ".join(REFERENCE_VALUES) + " |\n|---|---|---|" + "---:|" * len(REFERENCE_VALUES))
    for ct in cts:
        image, label = nib.load(str(DATA / ct / "image.nii.gz")), nib.load(str(DATA / ct / "label_seg8.nii.gz"))
        tensor = image_to_network(image, config)
        reference = torch.as_tensor(np.asarray(label_to_network(label, np.asarray(label.dataobj), config))[0])
        as_is = probabilities(tensor)
        transformed = {name: probabilities(transform(tensor.clone())) for name, transform in TRANSFORMS.items()}
        rows = {"as it is": [as_is]} | {name: [p] for name, p in transformed.items()}
        rows |= {f"as it is + {family}": [as_is, *(transformed[n] for n in names)] for family, names in FAMILIES.items()}
        for row, members in rows.items():
            prediction = torch.as_tensor(keep_largest_pieces(torch.stack(members).mean(0).argmax(0).numpy().astype(np.uint8), one_piece))
            cells = []
            for name, value in REFERENCE_VALUES.items():
                truth = reference == value
                if name not in version.registry or not truth.any():
                    cells.append("–")
                    continue
                dice = compute_dice((prediction == version.registry.by_name(name).label)[None, None], truth[None, None], include_background=True)
                cells.append(f"{float(dice[0, 0]):.2f}")
            print(f"| {bundle.name} | {ct} | {row} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
