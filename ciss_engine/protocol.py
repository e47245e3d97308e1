"""The paper's class-incremental protocol (METHOD.md §5) run end to end on a cohort.

For each seed: a base bundle on the first step's organs (other labels → background), then every
strategy learns the later steps from labels of that step's organs only, and an offline model learns
all organs at once (the upper bound). Final models are scored on held-out cases: Old = mean DSC
over the base organs, New = over the later ones, All = over every organ.
"""
from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from .api.events import ProtocolMetric
from .api.presets import STANDARD_ITERATIONS
from .atomic import staged_directory, write_json_atomic
from .bundle import Bundle
from .cancellation import CancelToken
from .errors import InputError
from .evaluation import score_case
from .events import EventSink
from .imaging import load_volume_or_raise
from .inference import Segmenter
from .preprocessing import PreprocessingConfig
from .registry import ClassRegistry
from .training.base import BaseTrainingRequest, train_base_bundle
from .training.incremental import LearnRequest, learn_step
from .training.loop_config import OFFLINE_ITERATIONS, PROTOCOL_ORGAN_CONTRAST, PROTOCOL_SYNTHETIC_SHARE, STEP_LEARNING_RATE, LoopConfig

# The paper's class order (label ids of the seg8 files).
PAPER_ORGANS = ("spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "pancreas", "liver", "stomach")
PROTOCOLS = {
    "4-4": ((1, 2, 3, 4), (5, 6, 7, 8)),
    "4-2": ((1, 2, 3, 4), (5, 6), (7, 8)),
    "2-2": ((1, 2), (3, 4), (5, 6), (7, 8)),
    "4-1": ((1, 2, 3, 4), (5,), (6,), (7,), (8,)),
    "7-1": ((1, 2, 3, 4, 5, 6, 7), (8,)),
}
OFFLINE = "offline"


@dataclasses.dataclass(frozen=True)
class Case:
    image: Path
    label: Path  # seg8 ids

    @property
    def name(self) -> str:
        return self.image.parent.name


@dataclasses.dataclass(frozen=True)
class ProtocolRequest:
    protocol: str
    strategies: Sequence[str]
    train: Sequence[Case]
    test: Sequence[Case]
    output: Path
    seeds: Sequence[int] = (0,)
    base_iterations: int = STANDARD_ITERATIONS
    step_iterations: int = STANDARD_ITERATIONS
    offline_iterations: int = OFFLINE_ITERATIONS
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    init_filters: int = 16
    batch_size: int = 2
    step_learning_rate: float = STEP_LEARNING_RATE
    run_offline: bool = True
    amp: bool = True  # bf16 on capable CPUs, mixed precision on CUDA; false: float32 (measures what bf16 costs)
    postprocess: bool = True  # score what ciss segment writes: one-piece organs as their largest piece (postprocessing.py)
    organ_contrast: float = PROTOCOL_ORGAN_CONTRAST  # of the models trained from scratch (base, offline)
    strategy_settings: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


def cases_in(folder: Path) -> list[Case]:
    """Case folders holding ``image.nii.gz`` and ``label_seg8.nii.gz``, sorted by name."""
    found = [Case(p / "image.nii.gz", p / "label_seg8.nii.gz") for p in sorted(Path(folder).iterdir()) if (p / "label_seg8.nii.gz").is_file()]
    if not found:
        raise InputError(f"no cases under {folder}", "each case is a folder with image.nii.gz and label_seg8.nii.gz (seg8 ids, see README)")
    return found


def step_labels(cases: Sequence[Case], classes: Sequence[int], folder: Path) -> list[tuple[Path, Path]]:
    """Label files keeping only ``classes`` (renumbered 1..n in order); cases without any are left out."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for case in cases:
        label = load_volume_or_raise(case.label, role="label")
        data = np.asarray(label.dataobj).astype(np.int64)
        kept = np.zeros(data.shape, np.uint8)
        for index, value in enumerate(classes, start=1):
            kept[data == value] = index
        if kept.any():
            path = folder / f"{case.name}.nii.gz"
            nib.save(nib.Nifti1Image(kept, label.affine), str(path))
            pairs.append((case.image, path))
    return pairs


def run_settings(request: Any) -> dict[str, Any]:
    """What a protocol ran with, for its protocol.json: a recorded table then says its budget and settings.

    Those of the invocation that wrote the file: a resumed run scores the models it finds, whatever made them.
    The cases and the output folder are left out (paths of the machine that ran it).
    """
    def plain(value: Any) -> Any:
        if isinstance(value, PreprocessingConfig):
            return value.to_json()
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return {field.name: plain(getattr(request, field.name)) for field in dataclasses.fields(request) if field.name not in ("train", "test", "output")}


def copy_bundle(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` whole or not at all (a staging folder renamed into place)."""
    with staged_directory(target) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)


def _knows(bundle: Path, classes: Sequence[int]) -> bool:
    """Whether the bundle's current version already segments every organ of a step."""
    return {PAPER_ORGANS[v - 1] for v in classes} <= set(Bundle.open_or_raise(bundle).load().registry.names)


def organs_of(classes: Sequence[int]) -> list[tuple[str, int, None]]:
    return [(PAPER_ORGANS[value - 1], index, None) for index, value in enumerate(classes, start=1)]


def case_in_bundle_labels(case: Case, registry: ClassRegistry) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """A case's CT, its reference (paper ids), and that reference in ``registry``'s label ids (organs the registry
    lacks as background)."""
    image = load_volume_or_raise(case.image)
    reference = np.asarray(load_volume_or_raise(case.label, role="label").dataobj).astype(np.int64)
    remapped = np.zeros(reference.shape, np.uint8)
    for organ in registry.organs:
        remapped[reference == PAPER_ORGANS.index(organ.name) + 1] = organ.label
    return image, reference, remapped


def score_bundle(bundle: Path, cases: Sequence[Case], device: torch.device, version_name: str | None = None, *, postprocess: bool = True) -> dict[str, Any]:
    """DSC per case and organ (paper ids mapped by organ name) of the bundle's current version (or ``version_name``), and where
    each predicted organ's voxels lie: ``confusion[predicted organ][reference organ or "background"]``,
    voxel counts summed over the cases. A DSC drop can be a lost organ or an organ spreading into other
    tissue; only the second shows as predicted voxels on background or on another organ."""
    version = Bundle.open_or_raise(bundle).load(version_name)
    return score_segmenter(Segmenter(version, device, postprocess=postprocess), cases)


def score_segmenter(segmenter: Segmenter, cases: Sequence[Case]) -> dict[str, Any]:
    """``score_bundle`` of a loaded segmenter (whose network a benchmark may have given other weights)."""
    version = segmenter.version
    scores = {}
    reference_names = ("background", *PAPER_ORGANS)
    confusion: dict[str, dict[str, int]] = {o.name: {} for o in version.registry.organs}
    for case in cases:
        image, reference, remapped = case_in_bundle_labels(case, version.registry)
        prediction = segmenter.segment(image).label
        case_scores = score_case(prediction, remapped, [(o.label, o.name) for o in version.registry.organs], image.header.get_zooms()[:3])
        scores[case.name] = {name: round(float(v["dsc"]), 4) for name, v in case_scores.items()}
        for organ in version.registry.organs:
            found = np.bincount(reference[prediction == organ.label], minlength=len(reference_names))
            for name, count in zip(reference_names, found.tolist()):
                if count:
                    confusion[organ.name][name] = confusion[organ.name].get(name, 0) + count
    return {"scores": scores, "confusion": confusion}


def train_from_scratch(
    cases: Sequence[Case], classes: Sequence[int], labels_folder: Path, output: Path, iterations: int, seed: int,
    *, preprocessing: PreprocessingConfig, init_filters: int, batch_size: int, device: torch.device, cancel: CancelToken, amp: bool = True,
    organ_contrast: float = PROTOCOL_ORGAN_CONTRAST,
) -> None:
    """A bundle trained from scratch on ``classes`` of ``cases``: the base model or the offline bound."""
    pairs = step_labels(cases, classes, labels_folder)
    train_base_bundle(
        BaseTrainingRequest(
            images=[p[0] for p in pairs], labels=[p[1] for p in pairs], organs=organs_of(classes), output=output,
            loop=LoopConfig(iterations=iterations, amp=amp), preprocessing=preprocessing, init_filters=init_filters, batch_size=batch_size, seed=seed,
            organ_contrast=organ_contrast, synthetic_share=PROTOCOL_SYNTHETIC_SHARE,
        ),
        device=device, sink=EventSink("quiet"), cancel=cancel,
    )


def scored_entry(bundle: Path, cases: Sequence[Case], steps: Sequence[Sequence[int]], device: torch.device, version_name: str | None = None,
                 *, postprocess: bool = True) -> dict[str, Any]:
    """A model's entry in protocol.json: its scores and confusion, with Old/New/All over ``steps``."""
    scored = score_bundle(bundle, cases, device, version_name, postprocess=postprocess)
    return {**scored, **old_new_all(scored["scores"], steps)}


def old_new_all(scores: dict[str, dict[str, float]], steps: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Old / New / All mean DSC (per organ mean over the cases where it is present, then over organs)."""
    per_organ = {}
    for name in PAPER_ORGANS:
        values = [s[name] for s in scores.values() if name in s]
        if values:
            per_organ[name] = float(np.mean(values))
    old = [PAPER_ORGANS[v - 1] for v in steps[0]]
    new = [PAPER_ORGANS[v - 1] for step in steps[1:] for v in step]

    def mean(names: list[str]) -> float | None:
        values = [per_organ[n] for n in names if n in per_organ]
        return float(np.mean(values)) if values else None

    return {"old": mean(old), "new": mean(new), "all": mean(old + new), "per_organ": per_organ}


def _network(request: ProtocolRequest) -> dict[str, Any]:
    return {"preprocessing": request.preprocessing, "init_filters": request.init_filters, "batch_size": request.batch_size, "amp": request.amp,
            "organ_contrast": request.organ_contrast}


def run_protocol(request: ProtocolRequest, *, device: torch.device, sink: EventSink, cancel: CancelToken) -> dict[str, Any]:
    if request.protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {request.protocol!r}", f"choose one of {', '.join(PROTOCOLS)}")
    steps = PROTOCOLS[request.protocol]
    quiet = EventSink("quiet")
    results: dict[str, Any] = {"protocol": request.protocol, "steps": [[PAPER_ORGANS[v - 1] for v in s] for s in steps],
                               "settings": run_settings(request), "seeds": {}}
    for seed in request.seeds:
        root = request.output / f"seed_{seed}"
        labels_root = root / "labels"
        seed_results: dict[str, Any] = {}
        base = root / "base"
        if not (base / "bundle.json").exists():
            sink.log(f"seed {seed}: base model on {', '.join(PAPER_ORGANS[v - 1] for v in steps[0])}")
            train_from_scratch(request.train, steps[0], labels_root / "step_1", base, request.base_iterations, seed, **_network(request), device=device, cancel=cancel)
        seed_results["base"] = scored_entry(base, request.test, steps[:1], device, postprocess=request.postprocess)
        for strategy in request.strategies:
            bundle = root / strategy
            if not (bundle / "bundle.json").exists():
                copy_bundle(base, bundle)
            for index, classes in enumerate(steps[1:], start=2):
                # Resumes step by step: a run killed inside a step left the bundle without that step's organs
                # (learn_step then resumes from its own checkpoint); a finished step is not learned twice.
                if _knows(bundle, classes):
                    continue
                pairs = step_labels(request.train, classes, labels_root / f"step_{index}")
                sink.log(f"seed {seed}, {strategy}: step {index} learns {', '.join(PAPER_ORGANS[v - 1] for v in classes)}")
                learn = LearnRequest(
                    bundle=bundle, organs=organs_of(classes), images=[p[0] for p in pairs], labels=[p[1] for p in pairs],
                    loop=LoopConfig(iterations=request.step_iterations, learning_rate=request.step_learning_rate, amp=request.amp),
                    strategy=strategy, strategy_settings=request.strategy_settings.get(strategy, {}),
                    batch_size=request.batch_size, seed=seed, accept_forgetting=True,
                )
                learn_step(learn, device=device, sink=quiet, cancel=cancel)
            seed_results[strategy] = scored_entry(bundle, request.test, steps, device, postprocess=request.postprocess)
            sink.emit(ProtocolMetric(seed=seed, strategy=strategy, old=seed_results[strategy]["old"], new=seed_results[strategy]["new"], all=seed_results[strategy]["all"]))
        if request.run_offline:
            offline = root / OFFLINE
            if not (offline / "bundle.json").exists():
                every = tuple(v for step in steps for v in step)
                train_from_scratch(request.train, every, labels_root / "offline", offline, request.offline_iterations, seed, **_network(request), device=device, cancel=cancel)
            seed_results[OFFLINE] = scored_entry(offline, request.test, steps, device, postprocess=request.postprocess)
        results["seeds"][str(seed)] = seed_results
        write_json_atomic(request.output / "protocol.json", results)
    return results
