"""Base training: deterministic by seed, exact resume after cancel, SIGTERM from outside."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ciss_test_helpers import cancelling_sink

from ciss_engine.bundle import Bundle
from ciss_engine.cancellation import CancelToken
from ciss_engine.errors import Cancelled, ExitCode, InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.preprocessing import PreprocessingConfig
from ciss_engine.training.base import BaseTrainingRequest, train_base_bundle, work_dir_for
from ciss_engine.training.loop_config import LoopConfig

ORGANS = [("spleen", 1, None), ("liver", 7, None)]


def _request(cohort: list[Path], output: Path, *, iterations: int = 6, resume: bool = False, seed: int = 0) -> BaseTrainingRequest:
    return BaseTrainingRequest(
        images=[c / "image.nii.gz" for c in cohort[:2]], labels=[c / "label_seg8.nii.gz" for c in cohort[:2]], organs=ORGANS, output=output,
        loop=LoopConfig(iterations=iterations, checkpoint_every=100), preprocessing=PreprocessingConfig(spacing_mm=(6.0, 6.0, 6.0), patch_size=(32, 32, 32)),
        init_filters=8, batch_size=1, seed=seed, other_labels="background", resume=resume,
    )


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return Bundle.open_or_raise(bundle).load().load_state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_model_other_seed_other_model(tmp_path, phantom_cohort, cudnn_left_free):
    quiet, device = EventSink(ProgressMode.QUIET), torch.device("cpu")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_base_bundle(_request(phantom_cohort, tmp_path / name, seed=seed), device=device, sink=quiet, cancel=CancelToken())
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark, "seed_run holds cuDNN to deterministic algorithms"
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_cancel_leaves_checkpoint_and_no_bundle_then_resume_matches_uninterrupted(tmp_path, phantom_cohort):
    device = torch.device("cpu")
    train_base_bundle(_request(phantom_cohort, tmp_path / "whole"), device=device, sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    token = CancelToken()
    with pytest.raises(Cancelled, match="cancelled at iteration 3 of 6") as caught:
        train_base_bundle(_request(phantom_cohort, tmp_path / "split"), device=device, sink=cancelling_sink(token, stage="train", step=3), cancel=token)
    assert "--resume" in caught.value.hint
    assert not (tmp_path / "split").exists()
    assert (work_dir_for(tmp_path / "split") / "checkpoint.pt").is_file()
    train_base_bundle(_request(phantom_cohort, tmp_path / "split", resume=True), device=device, sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    assert _same(_weights(tmp_path / "whole"), _weights(tmp_path / "split"))
    assert not work_dir_for(tmp_path / "split").exists()


def test_the_learning_rate_decays_as_nnunets_poly_schedule_and_resumes_where_it_stopped(tmp_path, phantom_cohort):
    """The schedule is PyTorch's PolynomialLR, checkpointed: lr_t = lr · (1 − t/T)^0.9 before and after a resume."""
    rates: dict[str, list[float]] = {"whole": [], "split": []}

    class RecordingSink(EventSink):
        def __init__(self, run: str, cancel_at: int | None = None, token: CancelToken | None = None) -> None:
            super().__init__(ProgressMode.QUIET)
            self.run, self.cancel_at, self.token = run, cancel_at, token

        def progress(self, stage, step, total, **fields):
            if stage == "train" and "lr" in fields:
                rates[self.run].append(fields["lr"])
                if self.cancel_at is not None and step >= self.cancel_at:
                    self.token.cancel()

    device = torch.device("cpu")
    train_base_bundle(_request(phantom_cohort, tmp_path / "whole"), device=device, sink=RecordingSink("whole"), cancel=CancelToken())
    config = LoopConfig()
    assert rates["whole"] == pytest.approx([config.learning_rate * (1 - t / 6) ** config.poly_power for t in range(6)], rel=1e-6)
    token = CancelToken()
    with pytest.raises(Cancelled):
        train_base_bundle(_request(phantom_cohort, tmp_path / "split"), device=device, sink=RecordingSink("split", 3, token), cancel=token)
    train_base_bundle(_request(phantom_cohort, tmp_path / "split", resume=True), device=device, sink=RecordingSink("split"), cancel=CancelToken())
    assert rates["split"] == rates["whole"]


def test_a_checkpoint_without_its_schedule_is_refused_with_the_fix(tmp_path):
    from ciss_engine.training.checkpoint import CHECKPOINT_NAME, load_checkpoint_or_raise

    torch.save({"model": {}, "optimizer": {}, "iteration": 3, "fingerprint": "f", "extra": {}}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(InputError, match="older CISSegmentation") as caught:
        load_checkpoint_or_raise(tmp_path, fingerprint="f")
    assert "without --resume" in caught.value.hint


def test_resume_with_other_settings_is_refused(tmp_path, phantom_cohort):
    token = CancelToken()
    with pytest.raises(Cancelled):
        train_base_bundle(_request(phantom_cohort, tmp_path / "run"), device=torch.device("cpu"), sink=cancelling_sink(token, stage="train", step=2), cancel=token)
    with pytest.raises(InputError, match="belongs to a run with other data or settings"):
        train_base_bundle(_request(phantom_cohort, tmp_path / "run", resume=True, seed=5), device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())


def test_sigterm_stops_the_engine_process_resumably(tmp_path, phantom_cohort):
    output = tmp_path / "bundle"
    command = [
        sys.executable, "-m", "ciss_engine", "train", "-i", str(phantom_cohort[0] / "image.nii.gz"), "-l", str(phantom_cohort[0] / "label_seg8.nii.gz"),
        "--organs", "spleen=1,liver=7", "--other-labels", "background", "-o", str(output), "--iterations", "400", "--patch-size", "32",
        "--init-filters", "8", "--batch-size", "1", "--spacing", "6", "--progress", "jsonl",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1].get("stage") == "train" or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=120)
    events += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == ExitCode.CANCELLED
    assert any(e["event"] == "checkpoint_saved" for e in events)
    assert events[-1]["event"] == "error" and "--resume" in events[-1]["hint"]
    assert not output.exists()
    assert (work_dir_for(output) / "checkpoint.pt").is_file()
