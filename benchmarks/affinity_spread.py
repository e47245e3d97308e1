"""How much PCDD's prototype affinities actually reweight the distillation, per affinity temperature T_a.

PCDD replaces MiB's uniform weight 1/(|O|+1) on each distilled class by a softmax of cosine similarities
over T_a. Cosines of post-activation (ReLU) features lie in [0, 1], so at T_a = 1 no weight can exceed
e ≈ 2.7 times another; pre-activation or centred features have cosines in [-1, 1] (e² ≈ 7.4). This script
measures, on a finished step, how far from uniform the weights are, how well they tell the old organs apart
(the organ-versus-organ margin), and how much of CRCD's weight goes to classes that have a teacher.

For a step bundle (its current version and the parent it was learned from) and the step's CTs with their
step labels (new organs only, numbered 1..|N| in the step's order, as ``ciss learn`` takes them and as
``ciss protocol`` writes them under ``labels/step_N``), it recomputes what the step's losses see: the
parent's logits and features, pseudo-labels with per-class entropy thresholds, the old and current
regions, in the affinity space the step recorded (``affinity_features``), with the prototypes the step
trained with: the PARENT's stored prototypes for ORCD ({0} ∪ O) and for CRCD's old organs; CRCD's
background and new organs ran on running prototypes that are not stored, so the new version's (the
clean pass at the end of the step, what the running means converge to) stand in for them.

Usage (repository root): PYTHONPATH=. .venv/bin/python benchmarks/affinity_spread.py BUNDLE CT:LABEL [CT:LABEL ...]
       [--temperatures 0.1,0.3,1,5] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ciss_engine.api.settings import recorded_settings
from ciss_engine.bundle import Bundle, semver_key
from ciss_engine.imaging import load_volume_or_raise
from ciss_engine.inference import load_network, sliding_window_outputs
from ciss_engine.losses.affinity import affinity_columns
from ciss_engine.losses.affinity_space import prototype_space, to_affinity_space
from ciss_engine.prototypes import FeaturePrototypes
from ciss_engine.preprocessing import PreprocessingConfig, image_to_network, label_to_network
from ciss_engine.pseudo_labels import EntropyThresholds, make_pseudo_labels, region_masks

SAMPLE = 200_000  # voxels per region and CT: the statistics are means, a sample keeps memory flat
CPU = torch.device("cpu")


def rows(tensor: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, K) feature rows of the voxels in ``mask`` (a random sample of at most SAMPLE)."""
    index = mask.flatten().nonzero().squeeze(1)
    if index.numel() > SAMPLE:
        index = index[torch.randperm(index.numel(), generator=generator)[:SAMPLE]]
    return tensor.flatten(1).T[index].float()


def normalised_entropy(weights: torch.Tensor) -> float:
    """Mean over voxels of H(a)/log C: 1 = uniform weights (MiB), 0 = all weight on one class."""
    entropy = -(weights * weights.clamp(min=1e-12).log()).sum(0)
    return float((entropy / np.log(weights.shape[0])).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("cases", nargs="+", help="CT:LABEL pairs; LABEL holds the step's new organs only, numbered 1..|N|")
    parser.add_argument("--temperatures", default="0.1,0.3,1,5")
    parser.add_argument("--json", type=Path, default=None, help="also write the statistics here")
    args = parser.parse_args()
    torch.manual_seed(0)
    bundle = Bundle.open_or_raise(args.bundle)
    new = bundle.load()
    parent = bundle.load(max((v for v in bundle.versions() if semver_key(v) < semver_key(new.version)), key=semver_key))
    num_old = parent.registry.num_classes - 1
    preprocessing = PreprocessingConfig.from_json(new.settings.preprocessing)
    old_network, new_network = load_network(parent, CPU), load_network(new, CPU)
    # As the step recorded it; older steps, and strategies without affinities, read as post-activation.
    space = getattr(recorded_settings(new.settings.strategy), "affinity_features", "post_activation")
    parent_store, new_store = (FeaturePrototypes.from_tensors(v.load_prototypes()) for v in (parent, new))

    def space_of(store: FeaturePrototypes) -> torch.Tensor:
        chosen = store.pre if prototype_space(space) == "pre" else store.post
        if chosen is None:
            raise SystemExit(f"the bundle stores no pre-activation prototypes; the step used {space!r}")
        return chosen.as_tensor()

    stored, final = space_of(parent_store), space_of(new_store)
    # ORCD: the parent's [0, O]; CRCD: background and N from the final pass, O from the parent.
    orcd_prototypes = stored
    crcd_prototypes = torch.cat([final[:1], stored[1:], final[num_old + 1 :]])
    temperatures = [float(t) for t in args.temperatures.split(",")]
    generator = torch.Generator().manual_seed(0)

    per_case = []
    thresholds = EntropyThresholds(num_old)
    for pair in args.cases:
        ct, label = (Path(p) for p in pair.split(":"))
        image, label_image = load_volume_or_raise(ct), load_volume_or_raise(label, role="label")
        network_image = image_to_network(image, preprocessing)
        step_labels = np.asarray(label_image.dataobj).astype(np.int64)
        labels = label_to_network(label_image, np.where(step_labels > 0, step_labels + num_old, 0), preprocessing).long()
        with torch.no_grad():
            logits_old, features_old = sliding_window_outputs(old_network, network_image[None], patch_size=preprocessing.patch_size, device=CPU, with_features=True)
            _, features_new = sliding_window_outputs(new_network, network_image[None], patch_size=preprocessing.patch_size, device=CPU, with_features=True)
        thresholds.update(logits_old)
        per_case.append((ct.parent.name or ct.name, labels.as_tensor(), logits_old, features_old[0], features_new[0]))

    tau = thresholds.thresholds()
    report: dict[str, dict[str, float]] = {}
    for temperature in temperatures:
        stats: dict[str, list[float]] = {}
        for _, labels, logits_old, features_old, features_new in per_case:
            pseudo = make_pseudo_labels(labels, logits_old, tau, num_old)[0]
            old_region, current_region = (m for m in region_masks(pseudo[None], num_old))
            old_region, current_region = old_region[0], current_region[0]
            old_features, orcd_space = to_affinity_space(features_old[None], orcd_prototypes, space)
            new_features, crcd_space = to_affinity_space(features_new[None], crcd_prototypes, space)
            old_features, new_features = old_features[0], new_features[0]
            if old_region.any():
                sample = torch.Generator().manual_seed(int(temperature * 1000))
                orcd = affinity_columns(rows(old_features, old_region, sample), orcd_space, temperature)
                stats.setdefault("orcd_max_weight", []).append(float(orcd.max(0).values.mean()))
                stats.setdefault("orcd_entropy", []).append(normalised_entropy(orcd))
                # The same sample of voxels (same generator seed) with their pseudo-label: the weight of the
                # voxel's own organ minus the largest weight of another old organ.
                own = rows(pseudo[None], old_region, torch.Generator().manual_seed(int(temperature * 1000)))[:, 0].long()
                organs = orcd[1:].clone()
                own_weight = organs.gather(0, (own - 1)[None])[0]
                organs.scatter_(0, (own - 1)[None], -1.0)
                stats.setdefault("orcd_organ_margin", []).append(float((own_weight - organs.max(0).values).mean()))
            background = current_region & (pseudo == 0)
            crcd = affinity_columns(rows(new_features, background, generator), crcd_space, temperature)
            stats.setdefault("crcd_background_a0", []).append(float(crcd[0].mean()))
            stats.setdefault("crcd_background_teacher_share", []).append(float(crcd[: num_old + 1].sum(0).mean()))
            stats.setdefault("crcd_entropy", []).append(normalised_entropy(crcd))
            new_voxels = current_region & (pseudo > num_old)
            if new_voxels.any():
                on_new = affinity_columns(rows(new_features, new_voxels, generator), crcd_space, temperature)
                stats.setdefault("crcd_new_organ_teacher_share", []).append(float(on_new[: num_old + 1].sum(0).mean()))
        report[str(temperature)] = {name: float(np.mean(values)) for name, values in stats.items()}

    uniform = 1 / (num_old + 1)
    organ_cosines = torch.nn.functional.normalize(to_affinity_space(torch.zeros(1, stored.shape[1], 1), stored, space)[1][1:], dim=1)
    off_diagonal = (organ_cosines @ organ_cosines.T)[~torch.eye(num_old, dtype=torch.bool)]
    print(f"step {parent.version} -> {new.version}: |O| = {num_old}, {crcd_prototypes.shape[0]} classes, affinity space {space}; "
          f"MiB's uniform weight per class {uniform:.3f}, teacher share 1; organ-organ prototype cosines "
          f"{float(off_diagonal.min()):.2f} to {float(off_diagonal.max()):.2f}\n")
    print("| T_a | ORCD: mean max weight | ORCD: H/log C | ORCD: own organ − next organ | CRCD background: a₀ | CRCD background: teacher share | CRCD on new-organ voxels: teacher share | CRCD: H/log C |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for temperature, values in report.items():
        cells = [values.get(k) for k in ("orcd_max_weight", "orcd_entropy", "orcd_organ_margin", "crcd_background_a0", "crcd_background_teacher_share",
                                           "crcd_new_organ_teacher_share", "crcd_entropy")]
        print(f"| {temperature} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "num_old": num_old, "affinity_space": space,
                                         "organ_cosines": [float(off_diagonal.min()), float(off_diagonal.max())], "temperatures": report}, indent=2))


if __name__ == "__main__":
    main()
