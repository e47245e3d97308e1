"""Each term's share of the gradient norm on the shared parameters (training/gradient_shares.py)."""
import pytest
import torch

from ciss_engine.network import NetworkConfig, build_network
from ciss_engine.api.events import GradientShares
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.training.gradient_shares import ShareRecorder, gradient_shares, shared_parameters


def test_shares_are_gradient_norms_over_their_sum():
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    terms = {"three": 3 * weight.sum(), "four": (4 * weight[0]), "constant": weight.detach().sum()}
    # ‖∇‖: 3·√2 and 4; the constant term does not reach the parameter.
    shares = gradient_shares(terms, [weight])
    total = 3 * 2 ** 0.5 + 4
    assert shares == pytest.approx({"three": 3 * 2 ** 0.5 / total, "four": 4 / total, "constant": 0.0})


def test_the_classifier_is_not_a_shared_parameter():
    network = build_network(NetworkConfig(init_filters=8, out_channels=3))
    shared = shared_parameters(network)
    assert all(p is not network.classifier.weight and p is not network.classifier.bias for p in shared)
    assert len(shared) == len(list(network.parameters())) - 2


def test_a_step_measures_the_shares_at_its_first_iteration_and_every_hundredth():
    """Each measurement is a backward pass per term (about 2.3 iterations of a pcdd step): every 100, not every one."""
    measured: list[int] = []

    class Recording(EventSink):
        def emit(self, event):
            if isinstance(event, GradientShares):
                measured.append(event.iteration)

    layer = torch.nn.Linear(2, 2)
    recorder = ShareRecorder(layer, Recording(ProgressMode.QUIET), stage="learn")
    for iteration in range(250):
        output = layer(torch.ones(1, 2))
        recorder.observe({"a": output.sum(), "b": output[0, 0]}, iteration)
    assert measured == [0, 100, 200] and recorder.average.measurements == 3
