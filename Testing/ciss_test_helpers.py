"""Helpers shared by the test suites (importable because pyproject sets pythonpath = Testing)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The phantom's whole field of view (336×288×240 mm) at 6 mm voxels, and a network grid of 6 mm:
# every organ is there and a training iteration takes a fraction of a second.
TINY_PHANTOM = {"shape": (56, 48, 40), "spacing": (6.0, 6.0, 6.0)}
TINY_TRAIN_ARGS = ["--iterations", "4", "--patch-size", "32", "--spacing", "6", "--init-filters", "8", "--batch-size", "1"]


def tiny_base(cohort: list[Path], output: Path, organs=(("spleen", 1, None), ("liver", 7, None)), sink=None, **request_fields):
    """A base bundle's first version, trained in-process for 3 iterations on the cohort's first case (8 filters, 32³
    patches, 6 mm grid, other organs as background); ``sink`` receives its events (default: none shown);
    ``request_fields`` set or override BaseTrainingRequest's fields."""
    import torch

    from ciss_engine.cancellation import CancelToken
    from ciss_engine.events import EventSink, ProgressMode
    from ciss_engine.preprocessing import PreprocessingConfig
    from ciss_engine.training.base import BaseTrainingRequest, train_base_bundle
    from ciss_engine.training.loop_config import LoopConfig

    fields = {
        "images": [cohort[0] / "image.nii.gz"], "labels": [cohort[0] / "label_seg8.nii.gz"], "loop": LoopConfig(iterations=3, checkpoint_every=100),
        "init_filters": 8, "batch_size": 1, "other_labels": "background",
        "preprocessing": PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32)), **request_fields,
    }
    request = BaseTrainingRequest(organs=list(organs), output=output, **fields)
    return train_base_bundle(request, device=torch.device("cpu"), sink=sink or EventSink(ProgressMode.QUIET), cancel=CancelToken())


class PicklePayload:
    """Pickled, this creates a marker file when unpickled: if loading a model ever ran code, the marker would appear."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def data_dir() -> Path:
    """Real CT for tests: $CISS_DATA, default ../shared/data beside the repository."""
    return Path(os.environ.get("CISS_DATA", REPO_ROOT.parent / "shared" / "data"))


def real_case(name: str) -> Path:
    """Folder of a real CT case, or skip the test with the reason when the data is not there."""
    folder = data_dir() / "ct" / name
    if not (folder / "image.nii.gz").is_file():
        pytest.skip(f"real CT {name} not found under {data_dir()} (set CISS_DATA)")
    return folder


def run_cli(*args: object) -> int:
    """Run ``ciss`` in this process (exit code returned); subprocess tests use ``python -m ciss_engine``."""
    from ciss_engine.cli import main

    return int(main([str(a) for a in args]))


def record_checksums(version_dir: Path) -> None:
    """Record the model files' current SHA-256 in the version's metadata.json, as someone who edits both
    would: the checksum is tamper evidence, not a signature, so the defences behind it (weights_only,
    safetensors) must hold on their own, and a test that crafts weights on purpose re-records them."""
    from ciss_engine.bundle import CHECKSUMMED_FILES, sha256_of

    path = version_dir / "configs" / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["ciss"]["files_sha256"] = {name: sha256_of(version_dir / name) for name in CHECKSUMMED_FILES if (version_dir / name).is_file()}
    path.write_text(json.dumps(metadata))


def logging_sink():
    """A quiet sink that keeps the log lines it is given (``.lines``), for tests of what a run says."""
    from ciss_engine.events import EventSink, ProgressMode

    class LoggingSink(EventSink):
        def __init__(self) -> None:
            super().__init__(ProgressMode.QUIET)
            self.lines: list[str] = []

        def log(self, message: str) -> None:
            self.lines.append(message)

    return LoggingSink()


def built_sampler_arguments(monkeypatch, module) -> list[dict]:
    """The keyword arguments of every PatchSampler that ``module`` (a training module) builds from now on; the samplers
    are the real ones and draw as always."""
    real = module.PatchSampler
    arguments: list[dict] = []

    def build(*args, **kwargs):
        arguments.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "PatchSampler", build)
    return arguments


def cancelling_sink(token, *, stage: str, step: int):
    """A quiet sink that cancels ``token`` once ``stage`` reports ``step`` (a user pressing Cancel)."""
    from ciss_engine.events import EventSink, ProgressMode

    class CancellingSink(EventSink):
        def progress(self, progress_stage, progress_step, total, **fields):
            if progress_stage == stage and progress_step >= step:
                token.cancel()

    return CancellingSink(ProgressMode.QUIET)


def new_organ_labels(case: Path, out: Path, values: dict[int, int]) -> Path:
    """A label file with only the new organs: seg8 value → new value, everything else 0."""
    import nibabel as nib
    import numpy as np

    image = nib.load(str(case / "label_seg8.nii.gz"))
    data = np.asarray(image.dataobj)
    kept = np.zeros_like(data)
    for old, new in values.items():
        kept[data == old] = new
    nib.save(nib.Nifti1Image(kept, image.affine), str(out))
    return out


def step_images(phantom_cohort: list[Path]) -> list[Path]:
    """The CTs of the ``step_labels`` fixture (conftest.py)."""
    return [c / "image.nii.gz" for c in phantom_cohort[2:4]]
