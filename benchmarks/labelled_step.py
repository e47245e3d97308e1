"""Benchmark: a class-incremental step's bound — the same step trained on labels that hold the old organs too.

A CISS step sees only the new organs' labels and must keep the old ones by distillation. Given every organ's labels
instead, the same step (the base model grown as `ciss learn` grows it, the step's iterations, learning rate, batch,
patches and augmentation, the new organs' Dice, CE and learning-rate settings of the strategy compared) needs no
distillation: what it reaches says how much of a strategy's shortfall is owed to the missing labels, and how much
room a strategy has above another at that budget. Not a product feature: a site that has every organ's labels retrains.
Two losses: `finetune` (default) is that strategy's (CE over every class, Dice and the new organs' own CE on the new
organs), so only the labels differ from a CISS step; `dice_ce` is the base model's (MONAI's Dice + CE over every class;
the new organs' learning-rate setting kept).

Writes OUTPUT/ROW/seed_S/labelled (a copy of the base with the step's version; ROW labelled_step, or
labelled_dice_ce with `--loss dice_ce`) and OUTPUT/ROW/protocol.json in `ciss protocol`'s format, so that `benchmarks/protocol_table.py OUTPUT`
shows it beside the strategies' rows. A finished seed is scored again, not retrained; a killed one resumes; seeds
recorded by an earlier run stay in protocol.json.

Usage: python benchmarks/labelled_step.py OUTPUT --data TRAIN --test-data TEST [--protocol 4-4] [--seeds 0,1,2]
           [--step-iterations 1000] [--loss finetune|dice_ce] [--like pcdd] [--setting NAME=VALUE ...]
  OUTPUT: a protocol sweep's folder whose base/seed_S/base are the base models (pcdd_calibration.sh's layout);
  --like: the strategy whose new-organ settings (new_class_dice, new_class_ce, new_class_lr_scale) the step takes at
  their defaults (pcdd's: 1, 0.3, 20); --setting NAME=VALUE overrides one.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.api.settings import parse_settings_or_raise  # noqa: E402
from ciss_engine.atomic import write_json_atomic  # noqa: E402
from ciss_engine.bundle import Bundle, write_version  # noqa: E402
from ciss_engine.cancellation import CancelToken  # noqa: E402
from ciss_engine.commands.learn import setting_texts_or_raise  # noqa: E402
from ciss_engine.device import seed_run  # noqa: E402
from ciss_engine.events import EventSink  # noqa: E402
from ciss_engine.inference import load_network  # noqa: E402
from ciss_engine.network import grow_classifier  # noqa: E402
from ciss_engine.preprocessing import PreprocessingConfig  # noqa: E402
from ciss_engine.prototypes import FeaturePrototypes  # noqa: E402
from ciss_engine.protocol import PAPER_ORGANS, PROTOCOLS, cases_in, copy_bundle, scored_entry  # noqa: E402
from ciss_engine.strategies import StepContext  # noqa: E402
from ciss_engine.strategies.base import total_loss  # noqa: E402
from ciss_engine.strategies.finetune import FineTuning  # noqa: E402
from ciss_engine.training.base import dice_ce_loss  # noqa: E402
from ciss_engine.training.cases import prepare_cases  # noqa: E402
from ciss_engine.training.incremental import make_step_batch  # noqa: E402
from ciss_engine.training.loop import run_training_loop  # noqa: E402
from ciss_engine.training.loop_config import STEP_LEARNING_RATE, LoopConfig  # noqa: E402
from ciss_engine.training.new_class_rate import scale_new_class_gradients  # noqa: E402
from ciss_engine.training.sampler import PatchBatch, PatchSampler  # noqa: E402

ROWS = {"finetune": "labelled_step", "dice_ce": "labelled_dice_ce"}  # the row's folder by loss
NEW_ORGAN_SETTINGS = ("new_class_dice", "new_class_ce", "new_class_lr_scale")  # those every strategy takes


def new_organ_settings(strategy: str) -> dict[str, str]:
    """The new organs' settings of ``strategy`` at their defaults, as ``--setting`` text."""
    defaults = parse_settings_or_raise(strategy, {})
    return {name: str(getattr(defaults, name)) for name in NEW_ORGAN_SETTINGS}


def train_labelled_step(base: Path, target: Path, cases_folder: Path, steps: tuple[tuple[int, ...], ...], *, iterations: int, seed: int,
                        loss: str, settings: dict[str, str], device: torch.device, sink: EventSink) -> None:
    """``target``: a copy of ``base`` with one more version, the base grown by the second step's organs and trained
    on every organ's labels of ``cases_folder`` with ``loss`` (module docstring)."""
    if target.exists() and len(Bundle.open_or_raise(target).versions()) > 1:
        return
    if not target.exists():
        copy_bundle(base, target)
    parent = Bundle.open_or_raise(target).load()
    new = [PAPER_ORGANS[v - 1] for v in steps[1]]
    registry = parent.registry.with_new_organs([(name, None) for name in new], step=2, version="1.1.0")
    every = [v for step in steps[:2] for v in step]
    preprocessing = PreprocessingConfig.from_json(parent.settings.preprocessing)
    training = cases_in(cases_folder)
    cases = prepare_cases([c.image for c in training], [c.label for c in training], value_to_class={v: registry.by_name(PAPER_ORGANS[v - 1]).label for v in every},
                          other_labels="background", config=preprocessing, sink=sink)
    old_network = load_network(parent, device).requires_grad_(False)
    seed_run(seed)
    network = grow_classifier(copy.deepcopy(old_network).requires_grad_(True), len(new))
    strategy_settings = parse_settings_or_raise("finetune", settings)
    scale_new_class_gradients(network, len(parent.registry), strategy_settings.new_class_lr_scale)
    prototypes = FeaturePrototypes.from_tensors(parent.load_prototypes())  # FineTuning reads none; StepContext wants them
    strategy = FineTuning(StepContext(num_old=len(parent.registry), num_new=len(new), stored_prototypes=prototypes, running_prototypes=prototypes), strategy_settings)
    loop = LoopConfig(iterations=iterations, learning_rate=STEP_LEARNING_RATE)
    sampler = PatchSampler(cases, num_classes=registry.num_classes, patch_size=preprocessing.patch_size, batch_size=2, seed=seed,
                           augment=loop.augmentation, intensities=preprocessing.model_intensities())
    no_thresholds = torch.zeros(1 + len(parent.registry))  # FineTuning makes no pseudo-labels

    def finetune_loss(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        return total_loss(strategy.weighted_terms(make_step_batch(batch, network, old_network, strategy, no_thresholds)))

    work_dir = target.parent / f".{target.name}.work"
    run_training_loop(network=network, loss_fn=dice_ce_loss(network) if loss == "dice_ce" else finetune_loss, sampler=sampler, config=loop, device=device, work_dir=work_dir,
                      fingerprint=f"{loss}-{seed}-{iterations}-{sorted(settings.items())}", resume=True, sink=sink, cancel=CancelToken(), stage="learn")
    ciss_settings = {**parent.metadata["ciss"], "step": 2, "network": network.config.to_json()}
    write_version(target, version="1.1.0", registry=registry, settings=ciss_settings, state_dict=network.state_dict(), prototypes={},
                  history=parent.history, changelog={**parent.metadata.get("changelog", {}), "1.1.0": f"{ROWS[loss]}: {', '.join(new)} with every organ labelled"},
                  make_current=True)
    shutil.rmtree(work_dir, ignore_errors=True)  # the checkpoints of a finished step, as ciss learn drops them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--test-data", type=Path, required=True)
    parser.add_argument("--protocol", default="4-4", choices=[p for p, steps in PROTOCOLS.items() if len(steps) == 2])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--step-iterations", type=int, default=1000)
    parser.add_argument("--loss", choices=tuple(ROWS), default="finetune")
    parser.add_argument("--like", default="pcdd", help="the strategy whose new-organ settings the step takes (default pcdd)")
    parser.add_argument("--setting", action="append", default=[], help="NAME=VALUE of the new organs' settings, over --like's")
    args = parser.parse_args()
    settings = {**new_organ_settings(args.like), **setting_texts_or_raise(args.setting)}
    steps, device, sink = PROTOCOLS[args.protocol], torch.device("cpu"), EventSink("quiet")
    test = cases_in(args.test_data)
    row = ROWS[args.loss]
    record = args.output / row / "protocol.json"
    earlier = json.loads(record.read_text())["seeds"] if record.exists() else {}  # seeds run by another process
    results: dict = {"protocol": args.protocol, "steps": [[PAPER_ORGANS[v - 1] for v in s] for s in steps],
                     "settings": {"step_iterations": args.step_iterations, "step_learning_rate": STEP_LEARNING_RATE, "new_organ_settings": settings, "loss": args.loss},
                     "seeds": earlier}
    for seed in (int(s) for s in args.seeds.split(",")):
        base = args.output / "base" / f"seed_{seed}" / "base"
        bundle = args.output / row / f"seed_{seed}" / "labelled"
        train_labelled_step(base, bundle, args.data, steps, iterations=args.step_iterations, seed=seed, loss=args.loss, settings=settings, device=device, sink=sink)
        results["seeds"][str(seed)] = {"base": scored_entry(base, test, steps[:1], device), row: scored_entry(bundle, test, steps, device)}
        entry = results["seeds"][str(seed)][row]
        print(f"seed {seed}: Old {entry['old']:.4f} New {entry['new']:.4f} All {entry['all']:.4f}", flush=True)
        write_json_atomic(record, results)


if __name__ == "__main__":
    main()
