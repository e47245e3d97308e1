"""Where does a domain step forget? The bottleneck's geometry against the decoder's reading of it.

For each strategy of a domain-protocol output (``ciss protocol --protocol domain``, or a row folder of
``domain_protocol.sh validation``), on site 1's held-out cases (the site the base knows): the linear CKA
(1 − Dual-Alignment's CNA loss, ``losses/hsic.py``) between the base's bottleneck and the adapted model's on the
same cells, and the agreement DSC of their whole-CT labels. A CKA near 1 with a falling agreement says the
bottleneck kept its geometry and the forgetting sits in the decoder, where an alignment of bottlenecks cannot act.

Usage: .venv/bin/python benchmarks/domain_forgetting_where.py ROW_FOLDER [ROW_FOLDER ...] [--seed 0] [--rows 4000]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ciss_engine.bundle import Bundle
from ciss_engine.events import EventSink
from ciss_engine.forgetting_guard import pooled_dsc
from ciss_engine.inference import load_network
from ciss_engine.losses.hsic import normalised_hsic
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.bottleneck_pass import bottleneck_rows
from ciss_engine.training.cases import prepare_cases
from ciss_engine.training.step_common import whole_ct_labels

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows-per-cka", type=int, default=4000, help="bottleneck cells drawn for the CKA (its Gram matrices grow with the square)")
    args = parser.parse_args()
    device, sink = torch.device("cpu"), EventSink("quiet")
    print("| row | strategy | version | site 1 CKA of the bottleneck with the base | site 1 agreement DSC with the base (mean over organs) |")
    print("|---|---|---|---:|---:|")
    for row in args.rows:
        root = row / f"seed_{args.seed}"
        base = Bundle.open_or_raise(root / "base").load()
        config = PreprocessingConfig.from_json(base.settings.preprocessing)
        folders = sorted((row / "data" / "site_1" / "test").glob("case_*"))
        cases = prepare_cases([f / "image.nii.gz" for f in folders], [f / "label_seg8.nii.gz" for f in folders],
                              value_to_class={v: v for v in ORGANS}, other_labels="background", config=config, sink=sink)
        pairs = [(c.image, torch.zeros_like(c.image, dtype=torch.long)) for c in cases]
        base_network = load_network(base, device)
        base_rows, _ = bottleneck_rows(base_network, pairs, patch_size=config.patch_size, device=device, sink=sink)
        base_labels = whole_ct_labels(base_network, cases, patch_size=config.patch_size, device=device)
        chosen = torch.randperm(base_rows.shape[0], generator=torch.Generator().manual_seed(0))[: args.rows_per_cka]
        for strategy_folder in sorted(p for p in root.iterdir() if p.name not in ("base", "labels") and (p / "bundle.json").exists()):
            bundle = Bundle.open_or_raise(strategy_folder)
            for version in bundle.versions()[1:]:
                network = load_network(bundle.load(version), device)
                rows, _ = bottleneck_rows(network, pairs, patch_size=config.patch_size, device=device, sink=sink)
                cka = float(normalised_hsic(rows[chosen], base_rows[chosen]))
                agreement = pooled_dsc(base_labels, whole_ct_labels(network, cases, patch_size=config.patch_size, device=device), list(ORGANS.items()))
                mean = np.mean([v for v in agreement.values() if v is not None])
                print(f"| {row.name} | {strategy_folder.name} | {version} | {cka:.3f} | {mean:.3f} |", flush=True)


if __name__ == "__main__":
    main()
