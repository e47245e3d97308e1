"""``ciss import`` refuses what it cannot import safely or faithfully, naming the file, the entry and the fix,
and never runs code from the model (planted payloads leave no trace)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ciss_test_helpers import PicklePayload, run_cli
from zoo_bundles import CHANNELS, inference_config, source_network, write_zoo_bundle

from ciss_engine.errors import ExitCode, InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.importers import detect_format_or_raise
from ciss_engine.importers.monai_bundle import import_monai_bundle

QUIET = EventSink(ProgressMode.QUIET)


def _import(source: Path, tmp_path: Path):
    return import_monai_bundle(source, tmp_path / "out", sink=QUIET)


def _zoo(tmp_path: Path, *, config: dict | None = None, channels: list[str] | None = None) -> Path:
    return write_zoo_bundle(tmp_path / "zoo", config=config, channels=channels)


def test_a_folder_that_is_neither_format_is_refused(tmp_path, capsys):
    folder = tmp_path / "random"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 16)
    assert run_cli("import", "-i", folder, "-o", tmp_path / "out") == ExitCode.INPUT_ERROR
    err = capsys.readouterr().err
    assert "neither a MONAI bundle nor an nnU-Net results folder" in err and "configs/metadata.json" in err
    with pytest.raises(InputError, match="not a MONAI bundle: configs/metadata.json is missing"):
        _import(folder, tmp_path)
    assert not (tmp_path / "out").exists()


def test_nnunet_folders_are_told_apart_from_monai_bundles(tmp_path):
    results = tmp_path / "Dataset001" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    results.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (results / name).write_text("{}")
    assert [detect_format_or_raise(folder, "auto") for folder in (results.parent, results)] == ["nnunet", "nnunet"]
    assert detect_format_or_raise(_zoo(tmp_path), "auto") == "monai-bundle"


def test_missing_weights_are_named(tmp_path):
    source = _zoo(tmp_path)
    (source / "models" / "model.pt").unlink()
    with pytest.raises(InputError, match=r"weights are missing: .*models/model.pt") as caught:
        _import(source, tmp_path)
    assert "monai.bundle download" in caught.value.hint


def test_a_checkpoint_with_a_global_outside_the_allow_list_is_refused_by_name(tmp_path):
    source = _zoo(tmp_path)
    torch.save({"model": source_network().state_dict(), "best_metric": np.float64(0.91)}, source / "models" / "model.pt")
    with pytest.raises(InputError, match=r"refused to load .*model.pt: it holds .*numpy\._core\.multiarray\.scalar") as caught:
        _import(source, tmp_path)
    assert "re-save its weights alone" in caught.value.hint


def test_a_checkpoint_holding_its_weights_under_model_imports(tmp_path):
    source = _zoo(tmp_path)
    torch.save({"model": source_network().state_dict()}, source / "models" / "model.pt")
    assert _import(source, tmp_path).version == "1.0.0"


def test_a_pickle_payload_in_the_weights_is_refused_and_never_runs(tmp_path):
    source = _zoo(tmp_path)
    marker = tmp_path / "payload_ran"
    torch.save({"model": {"convInit.conv.weight": PicklePayload(marker)}}, source / "models" / "model.pt")
    with pytest.raises(InputError, match=r"refused to load .*: it holds posix\.system"):
        _import(source, tmp_path)
    assert not marker.exists()


def test_an_expression_in_a_value_the_importer_reads_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "expression_ran"
    config = inference_config()
    config["pixdim"] = f"$__import__('os').system('touch {marker}')"
    with pytest.raises(InputError, match=r"inference.json: pixdim is the expression .*\(a call\), which the importer does not run") as caught:
        _import(_zoo(tmp_path, config=config), tmp_path)
    assert "literal value" in caught.value.hint
    assert not marker.exists()


def test_an_expression_in_an_entry_the_importer_never_reads_is_left_alone(tmp_path):
    marker = tmp_path / "expression_ran"
    config = inference_config()
    config["datalist"] = f"$__import__('os').system('touch {marker}')"
    config["initialize"] = [f"$open('{marker}', 'w')"]
    assert _import(_zoo(tmp_path, config=config), tmp_path).version == "1.0.0"
    assert not marker.exists()


@pytest.mark.parametrize("expression, what", [
    ("$[5.0, 5.0, 5.0] if torch.cuda.is_available() else [6.0, 6.0, 6.0]", r"\(a call\)"),
    ("$[5.0, 5.0, 5.0] if torch.version else [6.0, 6.0, 6.0]", r"\(an attribute access\)"),
    ("$@displayable_configs#highres.__class__", "not valid Python|an attribute access"),
    ("$[x for x in (5.0, 5.0, 5.0)]", "ListComp"),
    ("$[5.0, 5.0, 5.0] if True else __import__('os').system('true')", r"\(a call\)"),  # refused even where never reached
])
def test_only_literal_expressions_are_read(tmp_path, expression, what):
    config = inference_config()
    config["pixdim"] = expression
    with pytest.raises(InputError, match=what):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_yaml_with_python_tags_is_not_loaded(tmp_path):
    source = _zoo(tmp_path)
    (source / "configs" / "inference.json").unlink()
    marker = tmp_path / "yaml_ran"
    (source / "configs" / "inference.yaml").write_text(f"network_def: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(InputError, match="inference.yaml is not plain YAML"):
        _import(source, tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("target, message", [
    ("UNETR", "the network UNETR is not supported yet"),
    ("monai.networks.nets.BasicUNet", "the network monai.networks.nets.BasicUNet is not supported yet"),
    ("my_site.models.Net", "is 'my_site.models.Net', not a network CISSegmentation imports"),
])
def test_a_network_outside_the_list_is_refused(tmp_path, target, message):
    config = inference_config()
    config["network_def"] = {"_target_": target, "spatial_dims": 3, "in_channels": 1, "out_channels": 5}
    with pytest.raises(InputError, match=message) as caught:
        _import(_zoo(tmp_path, config=config), tmp_path)
    assert "SegResNet" in caught.value.hint


@pytest.mark.parametrize("argument, value, message", [
    ("norm", ["INSTANCE", {}], "norm"),
    ("upsample_mode", "deconv", "upsample_mode 'deconv'"),
    ("in_channels", 4, "in_channels 4"),
    ("use_conv_final", False, "use_conv_final false"),
])
def test_segresnet_settings_the_engine_does_not_build_are_refused(tmp_path, argument, value, message):
    config = inference_config()
    config["network_def"][argument] = value
    with pytest.raises(InputError, match=f"builds SegResNet with {message}"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_channel_def_must_match_the_heads_out_channels(tmp_path):
    with pytest.raises(InputError, match=r"metadata.json: channel_def names channels \[0, 1, 2, 3\], but the network's head has out_channels 5"):
        _import(_zoo(tmp_path, channels=CHANNELS[:-1]), tmp_path)


def test_weights_that_do_not_fit_the_network_def_are_refused(tmp_path):
    source = _zoo(tmp_path)
    config = inference_config()
    config["network_def"]["out_channels"] = 4
    torch.save(source_network(config["network_def"]).state_dict(), source / "models" / "model.pt")
    with pytest.raises(InputError, match=r"weights in .*model.pt do not fit the network_def .*wrong shape: conv_final.2.conv.weight \(4, 8, 1, 1, 1\)"):
        _import(source, tmp_path)


def test_background_must_be_channel_0(tmp_path):
    with pytest.raises(InputError, match="channel 0 is 'spleen', not background"):
        _import(_zoo(tmp_path, channels=["spleen", "background", *CHANNELS[2:]]), tmp_path)


def test_channel_names_that_collide_are_refused(tmp_path):
    with pytest.raises(InputError, match="both become the organ 'kidney_right'"):
        _import(_zoo(tmp_path, channels=["background", "kidney_right", "Right Kidney", "liver", "spleen"]), tmp_path)


@pytest.mark.parametrize("transform, message", [
    ({"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key"}, "preprocessing::transforms::7 is 'CropForegroundd'"),
    ({"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -1000, "a_max": 1000, "b_min": 0, "b_max": 1, "clip": True, "gamma": 2},
     r"sets gamma, which CISSegmentation cannot reproduce"),
])
def test_transforms_that_cannot_be_reproduced_are_named(tmp_path, transform, message):
    config = inference_config()
    config["preprocessing"]["transforms"].append(transform)
    with pytest.raises(InputError, match=message) as caught:
        _import(_zoo(tmp_path, config=config), tmp_path)
    assert "docs/import.md" in caught.value.hint


def test_resampling_before_orienting_is_refused(tmp_path):
    config = inference_config()
    transforms = config["preprocessing"]["transforms"]
    transforms[3], transforms[4] = transforms[4], transforms[3]
    with pytest.raises(InputError, match="resamples before Orientationd"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_an_orientation_other_than_ras_is_refused(tmp_path):
    config = inference_config()
    config["preprocessing"]["transforms"][3]["axcodes"] = "LPS"
    with pytest.raises(InputError, match="orients the CT to 'LPS'"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_a_postprocessing_the_engine_does_not_do_is_refused(tmp_path):
    config = inference_config()
    config["postprocessing"]["transforms"].insert(2, {"_target_": "KeepLargestConnectedComponentd", "keys": "pred"})
    with pytest.raises(InputError, match="postprocessing::transforms::2 is 'KeepLargestConnectedComponentd'"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_a_reference_cycle_is_refused(tmp_path):
    config = inference_config()
    config["pixdim"], config["spacing_again"] = "@spacing_again", "@pixdim"
    with pytest.raises(InputError, match="refers to itself"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_a_macro_outside_the_bundle_is_refused(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"pixdim": [5.0, 5.0, 5.0]}))
    config = inference_config()
    config["pixdim"] = f"%{outside}::pixdim"
    with pytest.raises(InputError, match="names a file outside the bundle"):
        _import(_zoo(tmp_path, config=config), tmp_path)


def test_yaml_aliases_that_expand_without_end_are_refused(tmp_path):
    source = _zoo(tmp_path)
    (source / "configs" / "inference.json").unlink()
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (source / "configs" / "inference.yaml").write_text("\n".join(levels) + "\nnetwork_def: {_target_: SegResNet, blocks_down: *a8}\n")
    with pytest.raises(InputError, match="expand to more than 100000 values"):
        _import(source, tmp_path)


def test_entries_may_come_from_another_config_file_of_the_bundle(tmp_path):
    config = inference_config()
    shared = {"network_def": config.pop("network_def"), "pixdim": [5.0, 5.0, 5.0]}
    config["network_def"] = "%configs/common.json::network_def"
    config["preprocessing"]["transforms"][4]["pixdim"] = "%configs/common.json#pixdim"
    source = _zoo(tmp_path, config={**config, "network_def": shared["network_def"]})
    (source / "configs" / "common.json").write_text(json.dumps(shared))
    (source / "configs" / "inference.json").write_text(json.dumps(config))
    version = _import(source, tmp_path)
    assert version.settings.network["init_filters"] == 8 and version.settings.preprocessing["spacing_mm"] == [5.0, 5.0, 5.0]
