"""The end-to-end demo, the clinical workflow in one command: a base model, new organs added without
the old organs' labels, the forgetting guard's verdict, and every CT segmented before and after.

Uses the real CTs of ``CISS_DATA`` (default ``../shared/data``) when they are there, else a
synthetic phantom cohort, and says which. The step runs through ``learn_step``, the code of
``ciss learn``; a cancelled demo continues from its checkpoint when run again, and a finished base
or step is reused (delete ``demo_output/bundle`` to train again).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import Bundle, BundleVersion
from .cancellation import CancelToken
from .demo_data import BASE_ORGANS, NEW_ORGANS, DemoCase, DemoData, find_demo_data, write_new_organ_labels
from .demo_report import case_scores, print_report
from .errors import ForgettingRejected
from .events import EventSink
from .preprocessing import PreprocessingConfig
from .training.checkpoint import CHECKPOINT_NAME


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    output: Path
    data_dir: Path
    iterations: int  # base training
    step_iterations: int
    seed: int
    device_name: str
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    init_filters: int = 16


def _base_version(data: DemoData, bundle_dir: Path, settings: DemoSettings, device: torch.device, sink: EventSink, cancel: CancelToken) -> BundleVersion:
    """The demo's base model on organs 1-4: trained once, reused by later runs."""
    from .commands.train import parse_organs_or_raise
    from .training.base import BaseTrainingRequest, train_base_bundle, work_dir_for
    from .training.loop_config import LoopConfig

    if (bundle_dir / "bundle.json").exists():
        sink.log(f"reusing the base model in {bundle_dir} (delete the folder to train again)")
        return Bundle.open_or_raise(bundle_dir).load("1.0.0")
    request = BaseTrainingRequest(
        images=[c.image for c in data.base_training], labels=[c.reference for c in data.base_training], organs=parse_organs_or_raise(BASE_ORGANS),
        output=bundle_dir, loop=LoopConfig(iterations=settings.iterations), preprocessing=settings.preprocessing, init_filters=settings.init_filters, seed=settings.seed,
        other_labels="background", resume=(work_dir_for(bundle_dir) / CHECKPOINT_NAME).is_file(),
    )
    return train_base_bundle(request, device=device, sink=sink, cancel=cancel)


def _stepped_version(bundle: Bundle) -> BundleVersion | None:
    """A version of an earlier demo run that already holds the new organs (published or rejected)."""
    for version in reversed(bundle.versions()):
        loaded = bundle.load(version)
        if all(name in loaded.registry.names for name, _ in NEW_ORGANS):
            return loaded
    return None


def _add_new_organs(data: DemoData, bundle_dir: Path, settings: DemoSettings, device: torch.device, sink: EventSink, cancel: CancelToken) -> tuple[BundleVersion, dict[str, Any]]:
    """The step, as ``ciss learn`` runs it: new organs from new-organ-only labels; returns the version and the guard's verdict.

    A version the guard rejects is still scored (that is the point of showing the verdict); it stays
    non-current in the bundle, as it would for a site.
    """
    from .training.incremental import LearnRequest, learn_step
    from .training.step_common import learn_work_dir
    from .training.loop_config import STEP_LEARNING_RATE, LoopConfig

    bundle = Bundle.open_or_raise(bundle_dir)
    earlier = _stepped_version(bundle)
    if earlier is not None:
        sink.log(f"reusing version {earlier.version} with {', '.join(n for n, _ in NEW_ORGANS)} (delete {bundle_dir} to learn again)")
        return earlier, earlier.settings.forgetting_guard
    labels = [write_new_organ_labels(case, settings.output / "step_labels") for case in data.step_training]
    request = LearnRequest(
        bundle=bundle_dir, organs=[(name, index, None) for index, (name, _) in enumerate(NEW_ORGANS, start=1)],
        images=[c.image for c in data.step_training], labels=labels,
        loop=LoopConfig(iterations=settings.step_iterations, learning_rate=STEP_LEARNING_RATE), seed=settings.seed,
        resume=any(learn_work_dir(bundle_dir).glob(f"*/{CHECKPOINT_NAME}")),
    )
    try:
        version, guard = learn_step(request, device=device, sink=sink, cancel=cancel)
        return version, guard.to_json()
    except ForgettingRejected as rejected:
        sink.log(f"the forgetting guard rejected the step: {rejected.message}")
        stepped = _stepped_version(Bundle.open_or_raise(bundle_dir))
        assert stepped is not None, "learn_step saves a rejected version before it raises"
        return stepped, stepped.settings.forgetting_guard


def _segment_all(cases: list[DemoCase], versions: dict[str, BundleVersion], output: Path, device: torch.device, sink: EventSink) -> dict[str, dict[str, np.ndarray]]:
    """Each CT segmented by each version: label maps, summaries and previews in ``output``; returns the label arrays."""
    from .imaging import load_volume_or_raise
    from .inference import Segmenter
    from .segmentation_outputs import write_segmentation_outputs

    labels: dict[str, dict[str, np.ndarray]] = {case.name: {} for case in cases}
    total, done = len(cases) * len(versions), 0
    for tag, version in versions.items():
        segmenter = Segmenter(version, device)
        for case in cases:
            sink.progress("segment", done, total)
            image = load_volume_or_raise(case.image)
            result = segmenter.segment(image)
            write_segmentation_outputs(
                result, image, version, label_path=output / f"{case.name}_{tag}_organs.nii.gz", summary_path=output / f"{case.name}_{tag}_summary.json",
                preview_path=output / f"{case.name}_{tag}_preview.png", per_organ_dir=None, source=str(case.image),
            )
            labels[case.name][tag] = result.label
            done += 1
    sink.progress("segment", total, total)
    return labels


def run_demo(settings: DemoSettings, *, sink: EventSink, cancel: CancelToken) -> dict[str, Any]:
    """Base model, step, guard, segment before and after, score; writes ``demo_report.json`` and returns it."""
    from .atomic import ensure_writable_dir, write_json_atomic
    from .device import resolve_device
    from .imaging import load_volume_or_raise
    from .preview import write_comparison_png

    output = ensure_writable_dir(settings.output)
    settings = dataclasses.replace(settings, output=output)
    device = resolve_device(settings.device_name)
    data = find_demo_data(settings.data_dir, output, sink)
    sink.log(f"data: {data.source}")
    bundle_dir = output / "bundle"
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    before = _base_version(data, bundle_dir, settings, device, sink, cancel)
    seconds["base"] = time.perf_counter() - started
    after, guard = _add_new_organs(data, bundle_dir, settings, device, sink, cancel)
    seconds["step"] = time.perf_counter() - started - seconds["base"]
    versions = {"before": before, "after": after}
    labels = _segment_all(data.scored, versions, output, device, sink)
    cases = {}
    for case in data.scored:
        image = load_volume_or_raise(case.image)
        reference = np.asarray(load_volume_or_raise(case.reference, role="label").dataobj)
        cases[case.name] = {"role": case.role, **case_scores(labels[case.name], reference, {tag: v.registry for tag, v in versions.items()}, image.header.get_zooms()[:3], NEW_ORGANS)}
        write_comparison_png(
            output / f"{case.name}_before_after.png", image, labels[case.name]["before"], labels[case.name]["after"], after.registry,
            labels=(f"before: {before.version}", f"after: {after.version}"), title=f"{case.name} ({case.role})",
        )
    seconds["segment"] = time.perf_counter() - started - seconds["base"] - seconds["step"]
    report = {
        "data": data.source, "bundle": str(bundle_dir), "device": str(device), "iterations": settings.iterations, "step_iterations": settings.step_iterations,
        "versions": {tag: version.version for tag, version in versions.items()}, "new_organs": [name for name, _ in NEW_ORGANS],
        "forgetting_guard": guard, "step_cts": [case.name for case in data.step_training], "seconds": {k: round(v, 1) for k, v in seconds.items()}, "cases": cases,
    }
    write_json_atomic(output / "demo_report.json", report)
    print_report(report, output)
    return report
