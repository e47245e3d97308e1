"""The training loop's guard (training/loop.py): an iteration whose gradient is NaN or infinite changes no weight, and
many in a row stop the run with the fix. Found where oneDNN's bf16 backward gave a tiny network's deepest convolution
gradients up to 1e35 (precision.py): the clipped step made every weight NaN, and the bundle's prototypes were NaN."""
from __future__ import annotations

import pytest
import torch
from ciss_test_helpers import logging_sink
from monai.data import MetaTensor

from ciss_engine.cancellation import CancelToken
from ciss_engine.errors import ExitCode, TrainingDiverged
from ciss_engine.events import EventSink
from ciss_engine.training.cases import PreparedCase
from ciss_engine.training.loop import MAX_NON_FINITE_IN_A_ROW, run_training_loop
from ciss_engine.training.loop_config import LoopConfig
from ciss_engine.training.sampler import PatchBatch, PatchSampler


def _train(tmp_path, network: torch.nn.Module, bad_iterations: set[int], iterations: int, sink: EventSink) -> list[torch.Tensor]:
    """A 1×1×1 convolution trained on a small volume; the loss is NaN at ``bad_iterations``. Returns the weights
    as they were when the last bad iteration began."""
    label = torch.zeros((1, 8, 8, 8), dtype=torch.uint8)
    label[0, 2:5, 2:5, 2:5] = 1
    case = PreparedCase("case", MetaTensor(label.float()), MetaTensor(label), "sha")
    sampler = PatchSampler([case], num_classes=2, patch_size=(4, 4, 4), batch_size=2, seed=0)
    before_bad: list[torch.Tensor] = []

    def loss_fn(batch: PatchBatch, iteration: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss = torch.nn.functional.cross_entropy(network(batch.images), batch.labels)
        if iteration in bad_iterations:
            before_bad[:] = [p.detach().clone() for p in network.parameters()]
            loss = loss * float("nan")
        return loss, {"ce": float(loss.detach())}

    run_training_loop(network=network, loss_fn=loss_fn, sampler=sampler, config=LoopConfig(iterations=iterations, checkpoint_every=1000),
                      device=torch.device("cpu"), work_dir=tmp_path / "work", fingerprint="f", resume=False, sink=sink, cancel=CancelToken())
    return before_bad


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 2, 1)


def test_an_iteration_with_a_nan_gradient_changes_no_weight_and_the_run_goes_on(tmp_path):
    sink, network, first = logging_sink(), _network(), _network()
    before_third = _train(tmp_path, network, {2}, iterations=3, sink=sink)
    assert not all(torch.equal(a, b) for a, b in zip(before_third, first.parameters())), "the first two iterations trained"
    assert all(torch.equal(a, b) for a, b in zip(network.parameters(), before_third)), "the NaN third changed nothing"
    assert sink.lines == ["train iteration 3: the gradient is NaN or infinite; this iteration changed no weight"]


def test_a_gradient_nan_in_every_iteration_stops_the_run_with_the_fix_and_the_first_weights(tmp_path):
    network, first = _network(), _network()
    with pytest.raises(TrainingDiverged, match=f"in {MAX_NON_FINITE_IN_A_ROW} iterations in a row") as caught:
        _train(tmp_path, network, set(range(100)), iterations=100, sink=logging_sink())
    assert "--learning-rate" in caught.value.hint and caught.value.exit_code == ExitCode.INPUT_ERROR
    assert all(torch.equal(a, b) for a, b in zip(network.parameters(), first.parameters()))


def test_good_iterations_between_bad_ones_reset_the_count(tmp_path):
    """Every other iteration NaN for longer than the limit: never that many in a row, so the run finishes."""
    sink = logging_sink()
    _train(tmp_path, _network(), set(range(0, 4 * MAX_NON_FINITE_IN_A_ROW, 2)), iterations=4 * MAX_NON_FINITE_IN_A_ROW, sink=sink)
    assert len(sink.lines) == 2 * MAX_NON_FINITE_IN_A_ROW
