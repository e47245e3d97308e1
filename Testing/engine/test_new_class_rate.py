"""The new organs' own learning rate (training/new_class_rate.py, setting ``new_class_lr_scale``): only the new
output channels' gradients are scaled, in every class layer of a head, and a step applies it to the network it trains."""
import copy
import shutil
from pathlib import Path

import pytest
import torch
from ciss_test_helpers import step_images
from zoo_bundles import UNET_DEF, inference_config

from ciss_engine.api.settings import MibSettings, PcddSettings, UniformSettings, parse_settings_or_raise
from ciss_engine.bundle import Bundle
from ciss_engine.cancellation import CancelToken
from ciss_engine.errors import InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.importers.monai_config import ConfigReader
from ciss_engine.importers.monai_network import source_network_or_raise
from ciss_engine.inference import load_network
from ciss_engine.network import NetworkConfig, build_network, grow_classifier
from ciss_engine.training.incremental import LearnRequest, learn_step
from ciss_engine.training.loop_config import LoopConfig
from ciss_engine.training.new_class_rate import new_class_convolutions, scale_new_class_gradients

NUM_OLD, NUM_NEW, SCALE = 2, 2, 7.0


def _segresnet():
    torch.manual_seed(0)
    return grow_classifier(build_network(NetworkConfig(init_filters=8, out_channels=1 + NUM_OLD)), NUM_NEW)


def _imported(network_def: dict):
    """A MONAI network as imported, grown (UNet's head: a transposed convolution and a convolution, both outputting the classes)."""
    torch.manual_seed(0)
    reader = ConfigReader(inference_config(network_def={**network_def, "out_channels": 1 + NUM_OLD}), Path("inference.json"), Path("."))
    return grow_classifier(build_network(source_network_or_raise(reader).config), NUM_NEW)


def _gradients(network) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(1, 1, 32, 32, 32, generator=generator)
    network.zero_grad()
    logits = network(image)
    (logits * torch.randn(logits.shape, generator=generator)).sum().backward()
    return {name: parameter.grad.clone() for name, parameter in network.named_parameters()}


NETWORKS = {"segresnet": (_segresnet, 1), "monai_unet": (lambda: _imported(UNET_DEF), 2)}


@pytest.mark.parametrize(("make", "class_layers"), NETWORKS.values(), ids=NETWORKS.keys())
def test_only_the_new_channels_of_every_class_layer_learn_faster(make, class_layers):
    plain = make()
    scaled = copy.deepcopy(plain)
    handles = scale_new_class_gradients(scaled, NUM_OLD, SCALE)
    assert len(new_class_convolutions(scaled)) == class_layers and len(handles) == 2 * class_layers
    expected, got = _gradients(plain), _gradients(scaled)
    names = {parameter: name for name, parameter in scaled.named_parameters()}
    scaled_names = set()
    for conv in new_class_convolutions(scaled):
        for parameter, axis in ((conv.weight, 1 if isinstance(conv, torch.nn.ConvTranspose3d) else 0), (conv.bias, 0)):
            name = names[parameter]
            scaled_names.add(name)
            old, new = slice(0, 1 + NUM_OLD), slice(1 + NUM_OLD, 1 + NUM_OLD + NUM_NEW)
            torch.testing.assert_close(got[name].narrow(axis, old.start, old.stop), expected[name].narrow(axis, old.start, old.stop))
            assert expected[name].narrow(axis, new.start, NUM_NEW).abs().sum() > 0
            torch.testing.assert_close(got[name].narrow(axis, new.start, NUM_NEW), SCALE * expected[name].narrow(axis, new.start, NUM_NEW))
    for name in expected.keys() - scaled_names:  # the shared features and everything else: the step's rate
        torch.testing.assert_close(got[name], expected[name])
    for handle in handles:
        handle.remove()
    for name, gradient in _gradients(scaled).items():
        torch.testing.assert_close(gradient, expected[name])


def test_scale_one_registers_nothing_and_a_scale_that_is_not_positive_is_refused():
    assert scale_new_class_gradients(_segresnet(), NUM_OLD, 1.0) == []
    with pytest.raises(InputError, match="new_class_lr_scale takes a positive number"):
        parse_settings_or_raise("pcdd", {"new_class_lr_scale": "0"})
    with pytest.raises(InputError, match="new_class_lr_scale"):
        parse_settings_or_raise("mib", {"new_class_lr_scale": "-2"})


def test_pcdd_and_its_uniform_twin_learn_new_channels_faster_by_default_the_baselines_do_not():
    assert PcddSettings().new_class_lr_scale == UniformSettings().new_class_lr_scale == 20.0
    assert MibSettings().new_class_lr_scale == 1.0


def _head_after_one_iteration(bundle, phantom_cohort, labels, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's weight after a one-iteration step (no weight decay, no clipping: the update is the gradient's)."""
    request = LearnRequest(bundle=bundle, organs=[("pancreas", 1, None), ("liver", 2, None)], images=step_images(phantom_cohort), labels=labels,
                           loop=LoopConfig(iterations=1, weight_decay=0.0, grad_clip=1e9, augmentation=False), batch_size=1, accept_forgetting=True,
                           strategy="pcdd", strategy_settings={"new_class_lr_scale": scale})
    version, _ = learn_step(request, device=torch.device("cpu"), sink=EventSink(ProgressMode.QUIET), cancel=CancelToken())
    assert version.settings.strategy["new_class_lr_scale"] == float(scale)
    trained = load_network(version, torch.device("cpu")).heads()[0]
    start = grow_classifier(load_network(Bundle.open_or_raise(bundle).load("1.0.0"), torch.device("cpu")), 2).heads()[0]
    return (trained.weight - start.weight).detach().flatten(1), (trained.bias - start.bias).detach()


def test_a_step_scales_the_updates_of_the_network_it_trains(bundle, phantom_cohort, step_labels, tmp_path):
    other = shutil.copytree(bundle, tmp_path / "other")
    plain_weight, plain_bias = _head_after_one_iteration(bundle, phantom_cohort, step_labels, "1")
    fast_weight, fast_bias = _head_after_one_iteration(other, phantom_cohort, step_labels, "10")
    old, new = slice(0, 5), slice(5, 7)  # background and four old organs; pancreas and liver
    torch.testing.assert_close(fast_weight[old], plain_weight[old], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(fast_bias[old], plain_bias[old], rtol=1e-4, atol=1e-7)
    assert plain_weight[new].abs().sum() > 0
    torch.testing.assert_close(fast_weight[new], 10 * plain_weight[new], rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(fast_bias[new], 10 * plain_bias[new], rtol=1e-3, atol=1e-6)
