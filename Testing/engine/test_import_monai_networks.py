"""MONAI bundles whose network is a UNet, DynUNet or SwinUNETR: read as data, refused outside the allow-list
with the argument named, wrapped with the feature tap at the final layer's input, grown with MiB's initialisation.
(Parity of ``ciss segment`` with MONAI's own run: test_import_monai_bundle.py; learning: test_import_learn.py.)"""
import copy
from pathlib import Path

import pytest
import torch
from zoo_bundles import DYNUNET_DEF, SWIN_UNETR_DEF, UNET_DEF, inference_config, source_network, write_zoo_bundle

from ciss_engine.bundle_schema import check_metadata_or_raise
from ciss_engine.errors import BundleError, InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.importers.monai_bundle import import_monai_bundle
from ciss_engine.importers.monai_config import ConfigReader
from ciss_engine.importers.monai_network import source_network_or_raise
from ciss_engine.importers.monai_transforms import source_preprocessing_or_raise
from ciss_engine.monai_zoo_network import monai_weights_to_engine
from ciss_engine.network import build_network, grow_classifier, network_config_from_json

QUIET = EventSink(ProgressMode.QUIET)
DEFINITIONS = {"unet": UNET_DEF, "dynunet": DYNUNET_DEF, "swin_unetr": SWIN_UNETR_DEF}
# The UNet without residual units: its head is the top transposed convolution alone.
PLAIN_UNET_DEF = {**UNET_DEF, "num_res_units": 0, "norm": "instance"}


def _reader(network_def: dict, **config_changes) -> ConfigReader:
    return ConfigReader({**inference_config(network_def=network_def), **config_changes}, Path("inference.json"), Path("."))


def _changed(network_def: dict, **changes) -> dict:
    return {**copy.deepcopy(network_def), **changes}


@pytest.mark.parametrize("network_def", DEFINITIONS.values(), ids=DEFINITIONS.keys())
def test_each_network_imports_with_its_arguments_and_the_difference_to_monai_recorded(network_def, tmp_path):
    version = import_monai_bundle(write_zoo_bundle(tmp_path / "zoo", config=inference_config(network_def=network_def, roi=[64, 32, 32])), tmp_path / "out", sink=QUIET)
    network = version.settings.network
    assert network["name"] == network_def["_target_"] and (network["in_channels"], network["out_channels"]) == (1, 5)
    assert {k: v for k, v in network_def.items() if k not in ("_target_", "spatial_dims", "in_channels", "out_channels")}.items() <= network["arguments"].items()
    assert version.history[0]["metrics"]["max_logit_difference_to_source"] < 1e-4
    assert f"MONAI {network_def['_target_']} (" in (version.path / "docs" / "README.md").read_text()
    assert version.settings.preprocessing["patch_size"] == [64, 32, 32]


@pytest.mark.parametrize("network_def, message", [
    (_changed(UNET_DEF, in_channels=2), r"builds UNet with in_channels 2 \(one CT channel\)"),
    (_changed(SWIN_UNETR_DEF, spatial_dims=2), r"builds SwinUNETR with spatial_dims 2 \(this engine segments 3-D CT\)"),
    (_changed(DYNUNET_DEF, out_channels=300), "builds DynUNet with out_channels 300"),
    (_changed(UNET_DEF, norm=["GROUP", {"num_groups": 2}]), r"builds UNet with norm \['GROUP', \{'num_groups': 2\}\] \(one of instance, batch\)"),
    (_changed(UNET_DEF, bias=False), "builds UNet with bias False .*MiB"),
    (_changed(UNET_DEF, act=["PRELU", {"num_parameters": 4}]), "builds UNet with act .* num_parameters 1"),
    (_changed(DYNUNET_DEF, strides=[2, 2, 2]), r"builds DynUNet with strides \[2, 2, 2\] \(the first must be 1"),
    (_changed(DYNUNET_DEF, upsample_kernel_size=[3, 3]), r"builds DynUNet with upsample_kernel_size \[3, 3\] \(strides\[1:\]"),
    (_changed(SWIN_UNETR_DEF, feature_size=16), "builds SwinUNETR with feature_size 16 .*multiple of 12"),
    (_changed(SWIN_UNETR_DEF, use_flash_attention=True), r"network_def \(SwinUNETR\) sets use_flash_attention, which CISSegmentation cannot reproduce"),
    (_changed(SWIN_UNETR_DEF, norm_layer="$torch.nn.LayerNorm"), "sets norm_layer"),
])
def test_settings_outside_the_allow_list_are_refused_by_name(network_def, message):
    with pytest.raises(InputError, match=message):
        source_network_or_raise(_reader(network_def))


def test_dropout_and_arguments_without_effect_are_left_out_and_said():
    network = source_network_or_raise(_reader(_changed(SWIN_UNETR_DEF, drop_rate=0.1, img_size=[96, 96, 96], use_checkpoint=True)))
    assert network.config.arguments["feature_size"] == 12 and "drop_rate" not in network.config.arguments
    assert [note.split(" left out")[0] for note in network.notes] == ["drop_rate 0.1", "img_size", "use_checkpoint"]


@pytest.mark.parametrize("network_def, roi, message", [
    (SWIN_UNETR_DEF, [48, 32, 32], r"roi_size is \[48, 32, 32\] \(the engine needs three multiples of \[32, 32, 32\]"),
    (SWIN_UNETR_DEF, [32, 32, 32], "one of them at least twice its multiple"),  # one voxel at the bottleneck: no norm in training
    (_changed(DYNUNET_DEF, strides=[1, [2, 2, 1], 2], upsample_kernel_size=[[2, 2, 1], 2]), [30, 32, 32], r"multiples of \[4, 4, 2\]"),
])
def test_the_window_must_fit_the_networks_downsampling(network_def, roi, message):
    reader = _reader(network_def, inferer={"_target_": "SlidingWindowInferer", "roi_size": roi})
    multiples = source_network_or_raise(reader).config.downsampling()
    with pytest.raises(InputError, match=message):
        source_preprocessing_or_raise(reader, multiples)


def test_an_anisotropic_dynunet_window_is_accepted_per_axis():
    network_def = _changed(DYNUNET_DEF, strides=[1, [2, 2, 1], 2], upsample_kernel_size=[[2, 2, 1], 2])
    reader = _reader(network_def, inferer={"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 30]})
    config = source_network_or_raise(reader).config
    assert config.downsampling() == (4, 4, 2) and source_preprocessing_or_raise(reader, config.downsampling()).patch_size == (32, 32, 30)


def _imported(network_def: dict):
    """The engine's network for ``network_def`` with the source's weights, and MONAI's own network with them."""
    source = source_network(network_def)
    network = build_network(source_network_or_raise(_reader(network_def)).config)
    network.load_state_dict(monai_weights_to_engine(source.state_dict()))
    return network.eval(), source


WIRING = {**DEFINITIONS, "plain_unet": PLAIN_UNET_DEF}


@pytest.mark.parametrize("network_def", WIRING.values(), ids=WIRING.keys())
def test_the_tap_is_the_final_layers_input_and_growth_keeps_old_logits(network_def):
    network, source = _imported(network_def)
    image = torch.randn(1, 1, 64, 32, 32, generator=torch.Generator().manual_seed(1))
    # UNet's tap lies strides[0] times coarser, repeated to the logits' grid: every strides[0]-th voxel is the tap itself.
    step = network_def["strides"][0] if network_def["_target_"] == "UNet" else 1
    with torch.no_grad():
        logits, features = network.forward_with_features(image)
        torch.testing.assert_close(logits, source(image))
        assert features.shape == (1, network.feature_channels, 64, 32, 32)
        torch.testing.assert_close(network._final_layer()(features[:, :, ::step, ::step, ::step]), logits)
        grow_classifier(network, 1)
        grown, grown_features = network.forward_with_features(image)
    assert grown.shape[1] == 6 == network.num_classes and all(head.out_channels == 6 for head in network.heads())
    torch.testing.assert_close(grown_features, features)
    torch.testing.assert_close(grown[:, 1:5], logits[:, 1:5])  # MiB: old organs' logits unchanged
    torch.testing.assert_close(grown[:, [0, 5]], (logits[:, :1] - torch.log(torch.tensor(2.0))).expand(-1, 2, -1, -1, -1))
    torch.testing.assert_close(network._final_layer()(grown_features[:, :, ::step, ::step, ::step]), grown)
    rebuilt = build_network(network_config_from_json(network.config.to_json()))
    rebuilt.load_state_dict(network.state_dict())  # every copy of every head grew: DynUNet holds its deep-supervision heads twice


# Channels of each encoder stage, finest first, the bottleneck last (SwinUNETR's encoder10 holds 16 × feature_size).
STAGE_CHANNELS = {"unet": [4, 8, 16], "dynunet": [4, 8, 16], "swin_unetr": [12, 12, 24, 48, 192], "plain_unet": [4, 8, 16]}


@pytest.mark.parametrize("name", WIRING)
def test_encoder_stages_are_read_from_the_same_pass_finest_first(name):
    network, _ = _imported(WIRING[name])
    image = torch.randn(1, 1, 64, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, features, stages = network.forward_with_stages(image)
        expected_logits, expected_features = network.forward_with_features(image)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(features, expected_features)
    assert [s.shape[1] for s in stages] == STAGE_CHANNELS[name]
    sizes = [s.shape[2:].numel() for s in stages]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]


def test_a_recorded_network_outside_the_allow_list_is_refused_when_a_bundle_is_read(tmp_path):
    version = import_monai_bundle(write_zoo_bundle(tmp_path / "zoo", config=inference_config(network_def=UNET_DEF)), tmp_path / "out", sink=QUIET)
    metadata = copy.deepcopy(version.metadata)
    check_metadata_or_raise(metadata, tmp_path / "metadata.json")
    for change, message in [({"norm_layer": "os.system"}, "not literal values of exactly"), ({"num_res_units": -1}, "num_res_units -1")]:
        edited = copy.deepcopy(metadata)
        edited["ciss"]["network"]["arguments"].update(change)
        with pytest.raises(BundleError, match=f"ciss.network: .*UNet.* {message}"):
            check_metadata_or_raise(edited, tmp_path / "metadata.json")
        with pytest.raises(BundleError, match="unsupported UNet network"):
            network_config_from_json(edited["ciss"]["network"])
