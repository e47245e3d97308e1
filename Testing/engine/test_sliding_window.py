"""Whole-CT inference (inference.sliding_window_outputs): on the CPU a pass whose window count is odd runs its lone
last window beside a copy where a batch of one would take PyTorch's slow convolution (a small network and patch),
alone where it would not, and returns only that window's outputs."""
import pytest
import torch
from monai.inferers import sliding_window_inference

from ciss_engine.inference import WINDOW_BATCH, sliding_window_outputs
from ciss_engine.network import NetworkConfig, build_network

PATCH = (32, 32, 32)


def _batches_seen(network, image: torch.Tensor, **options) -> tuple[list[int], torch.Tensor]:
    batches = []
    hook = network.backbone.convInit.register_forward_pre_hook(lambda _, inputs: batches.append(inputs[0].shape[0]))
    logits, _ = sliding_window_outputs(network, image, patch_size=PATCH, device=torch.device("cpu"), **options)
    hook.remove()
    return batches, logits


def _network_and_image(init_filters: int = 8):
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=init_filters, out_channels=3)).eval()
    image = torch.rand(1, 1, 64, 32, 32, generator=torch.Generator().manual_seed(1))  # 3 windows at overlap 0.5
    return network, image


@pytest.mark.parametrize("mirroring_axes", [(), (0,)])
def test_an_odd_window_count_runs_in_pairs_and_gives_each_windows_own_logits(mirroring_axes):
    network, image = _network_and_image()  # 8 filters × 32 × 32 = 8192: the slow path alone

    batches, logits = _batches_seen(network, image, mirroring_axes=mirroring_axes)

    def one_at_a_time(patch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            total = network(patch)
            for dims in ([2 + a] for a in mirroring_axes):
                total = total + network(patch.flip(dims)).flip(dims)
        return total / (1 + len(mirroring_axes))

    with torch.no_grad():
        expected = sliding_window_inference(image, PATCH, 1, one_at_a_time, overlap=0.5, mode="gaussian")
    assert set(batches) == {WINDOW_BATCH} and len(batches) == 2 * (1 + len(mirroring_axes))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_features_of_an_odd_pass_match_the_window_by_window_pass():
    network, image = _network_and_image()
    logits, features = sliding_window_outputs(network, image, patch_size=PATCH, device=torch.device("cpu"), with_features=True)

    def one_at_a_time(patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return network.forward_with_features(patch)

    with torch.no_grad():
        expected_logits, expected_features = sliding_window_inference(image, PATCH, 1, one_at_a_time, overlap=0.5, mode="gaussian")
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(features, expected_features, rtol=1e-4, atol=1e-4)


def test_a_wide_network_runs_its_lone_window_alone():
    network, image = _network_and_image(init_filters=32)  # 32 × 32 × 32 = 32768: oneDNN's path alone, a copy adds work
    batches, _ = _batches_seen(network, image)
    assert batches == [WINDOW_BATCH, 1]
