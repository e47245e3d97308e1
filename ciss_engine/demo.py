"""The end-to-end demo: build a base bundle on 4 organs, segment CTs, print a table, write previews.

Uses the real CTs of ``CISS_DATA`` (default ``../shared/data``) when they are there, else a
synthetic phantom cohort, and says which. Scores on the training CT's sibling (``ts_abd_sm``: the
same patient) are a sanity check of the pipeline, not evidence of generalisation.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from .cancellation import CancelToken
from .events import EventSink

BASE_ORGANS = "spleen=1,kidney_right=2,kidney_left=3,gallbladder=4"


@dataclasses.dataclass(frozen=True)
class DemoData:
    source: str
    train_images: list[Path]
    train_labels: list[Path]
    test_images: list[Path]
    test_labels: list[Path]


def default_data_dir() -> Path:
    return Path(os.environ.get("CISS_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def find_demo_data(data_dir: Path, work: Path, sink: EventSink) -> DemoData:
    """Real CT when present, else phantom cases written under ``work``."""
    ct = data_dir / "ct"
    real = [ct / name for name in ("ts_abdpelvis", "ts_abd_sm", "chest_4x")]
    if all((case / "image.nii.gz").is_file() for case in real):
        return DemoData(
            source=f"real CT from {data_dir} (labels are TotalSegmentator predictions)",
            train_images=[real[0] / "image.nii.gz"],
            train_labels=[real[0] / "label_seg8.nii.gz"],
            # The training CT itself first: shows what the model learned; the others show how it transfers.
            test_images=[c / "image.nii.gz" for c in real],
            test_labels=[c / "label_seg8.nii.gz" for c in real],
        )
    from .phantom import write_cohort

    sink.log(f"no real CT under {data_dir}: using synthetic phantom cases")
    cases = write_cohort(work / "phantom", 4, 0)
    return DemoData(
        source="synthetic phantom (set CISS_DATA to a folder with ct/ts_abdpelvis to use real CT)",
        train_images=[c / "image.nii.gz" for c in cases[:3]],
        train_labels=[c / "label_seg8.nii.gz" for c in cases[:3]],
        test_images=[cases[3] / "image.nii.gz"],
        test_labels=[cases[3] / "label_seg8.nii.gz"],
    )


def run_demo(*, output: Path, data_dir: Path, iterations: int, seed: int, device_name: str, sink: EventSink, cancel: CancelToken) -> dict[str, object]:
    """Train (or reuse) the demo bundle, segment the test CTs, score them; returns the report."""
    from .atomic import ensure_writable_dir, write_json_atomic
    from .bundle import Bundle
    from .device import resolve_device
    from .evaluation import markdown_table, score_case, summarise
    from .imaging import load_volume_or_raise
    from .inference import Segmenter
    from .preprocessing import PreprocessingConfig
    from .segmentation_outputs import write_segmentation_outputs
    from .training.base import BaseTrainingRequest, train_base_bundle
    from .training.loop_config import LoopConfig
    from .commands.train import parse_organs_or_raise

    import numpy as np

    output = ensure_writable_dir(output)
    device = resolve_device(device_name)
    data = find_demo_data(data_dir, output, sink)
    sink.log(f"data: {data.source}")
    bundle_dir = output / "bundle"
    started = time.perf_counter()
    if (bundle_dir / "bundle.json").exists():
        sink.log(f"reusing the demo bundle in {bundle_dir} (delete it to train again)")
    else:
        request = BaseTrainingRequest(
            images=data.train_images, labels=data.train_labels, organs=parse_organs_or_raise(BASE_ORGANS), output=bundle_dir,
            loop=LoopConfig(iterations=iterations), preprocessing=PreprocessingConfig(), seed=seed, other_labels="background",
        )
        train_base_bundle(request, device=device, sink=sink, cancel=cancel)
    train_seconds = time.perf_counter() - started
    version = Bundle.open_or_raise(bundle_dir).load()
    segmenter = Segmenter(version, device)
    organs = [(o.label, o.name) for o in version.registry.organs]
    cases = {}
    for image_path, label_path in zip(data.test_images, data.test_labels):
        name = image_path.parent.name
        image = load_volume_or_raise(image_path)
        result = segmenter.segment(image)
        write_segmentation_outputs(
            result, image, version, label_path=output / f"{name}_organs.nii.gz", summary_path=output / f"{name}_summary.json",
            preview_path=output / f"{name}_preview.png", per_organ_dir=None, source=str(image_path),
        )
        reference = np.asarray(load_volume_or_raise(label_path, role="label").dataobj)
        # The reference uses the paper's ids; the base organs are 1-4 there and in the bundle.
        cases[name] = score_case(result.label, np.where(reference <= 4, reference, 0), organs, image.header.get_zooms()[:3])
    # The means are over held-out CTs only: the training CT shows what was learned, not how well it transfers.
    training = {path.parent.name for path in data.train_images}
    summary = summarise({name: scores for name, scores in cases.items() if name not in training})
    report = {"data": data.source, "bundle": str(bundle_dir), "train_seconds": round(train_seconds, 1), "iterations": iterations,
              "device": str(device), "cases": cases, "training_cases": sorted(training & set(cases)), **summary}
    write_json_atomic(output / "demo_report.json", report)
    print(f"\nCISSegmentation demo — {data.source}\n")
    print(markdown_table({f"{name} (training CT, not in the mean)" if name in training else name: scores for name, scores in cases.items()}, summary))
    print(f"Previews: {', '.join(str(output / (p.parent.name + '_preview.png')) for p in data.test_images)}")
    return report
