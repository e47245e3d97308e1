"""``ciss import --format monai-bundle``: a zoo-layout bundle becomes a CISSegmentation bundle that segments
exactly as the source's own MONAI pipeline does."""
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import run_cli
from zoo_bundles import (
    CHANNELS, DYNUNET_DEF, LICENCE, SWIN_UNETR_DEF, UNET_DEF, inference_config, source_network, window_first_config, write_zoo_bundle,
)

from ciss_engine.bundle import Bundle
from ciss_engine.commands.info import describe_bundle
from ciss_engine.commands.verify import verify_bundle
from ciss_engine.device import autocast, autocast_dtype
from ciss_engine.errors import InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.importers.monai_bundle import import_monai_bundle
from ciss_engine.importers.monai_classes import colour_of
from ciss_engine.importers.monai_network import engine_state_dict
from ciss_engine.phantom import generate_case
from ciss_engine.preprocessing import PreprocessingConfig

QUIET = EventSink(ProgressMode.QUIET)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return write_zoo_bundle(tmp_path_factory.mktemp("zoo") / "wholeBody_tiny")


@pytest.fixture(scope="module")
def imported(zoo, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("imported") / "site_model"
    assert run_cli("import", "--format", "monai-bundle", "-i", zoo, "-o", output, "--quiet") == 0
    return output


def test_import_writes_version_1_0_0_with_classes_by_name_and_codes(imported):
    version = Bundle.open_or_raise(imported).load()
    assert version.version == "1.0.0" and Bundle.open_or_raise(imported).versions() == ["1.0.0"]
    # channel_def is listed in reverse in metadata.json: channel numbers decide, not positions.
    assert version.registry.names == ["spleen", "kidney_right", "kidney_left", "tumour_bed"]
    kidney, custom = version.registry.by_name("kidney_right"), version.registry.by_name("tumour_bed")
    assert (kidney.type.scheme, kidney.type.code, kidney.modifier.meaning) == ("SCT", "64033007", "Right")
    assert custom.type.scheme == "99CISS" and custom.rgb == colour_of("tumour_bed")  # the same colour on every import
    assert version.settings.network == {"name": "SegResNet", "init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1], "in_channels": 1, "out_channels": 5}
    source = version.settings.source
    assert source["format"] == "monai-bundle" and source["version"] == "0.1.9" and source["channel_names"] == {"kidney_right": "Right Kidney", "tumour_bed": "Tumour Bed"}
    assert version.metadata["copyright"] == "Copyright (c) MONAI Consortium" and "MONAI team (test)" in version.metadata["authors"]


def test_a_window_before_resampling_and_monai_inferer_defaults_are_recorded(tmp_path):
    recorded = import_monai_bundle(write_zoo_bundle(tmp_path / "zoo", config=window_first_config()), tmp_path / "out", sink=QUIET).settings.preprocessing
    assert recorded["intensity"] == [{"op": "scale_intensity_range", "a_min": -175.0, "a_max": 250.0, "b_min": 0.0, "b_max": 1.0, "clip": True}]
    assert recorded["intensity_before_resampling"] is True and recorded["spacing_mm"] == [4.0, 4.0, 5.0]
    assert (recorded["window_overlap"], recorded["window_blend"]) == (0.25, "constant") and "image_padding" not in recorded


def test_import_reproduces_the_preprocessing_and_the_inferer(imported):
    recorded = Bundle.open_or_raise(imported).load().settings.preprocessing
    assert "hu_window" not in recorded  # an engine that predates intensity steps refuses the bundle instead of misreading it
    assert recorded["spacing_mm"] == [5.0, 5.0, 5.0] and recorded["patch_size"] == [32, 32, 32]  # "$… if @highres else …" resolved
    assert recorded["intensity"] == [
        {"op": "normalize_intensity", "nonzero": True, "channel_wise": False},
        {"op": "scale_intensity", "minv": -1.0, "maxv": 1.0, "channel_wise": False},
    ]
    assert (recorded["image_padding"], recorded["window_overlap"], recorded["window_padding"]) == ("border", 0.25, "replicate")
    assert "window_blend" not in recorded  # gaussian, the engine's default


def test_bundles_trained_here_record_their_preprocessing_as_before():
    assert PreprocessingConfig().to_json() == {"spacing_mm": [3.0, 3.0, 3.0], "hu_window": [-175.0, 250.0], "patch_size": [64, 64, 64], "orientation": "RAS"}
    assert PreprocessingConfig.from_json({"spacing_mm": [2, 2, 2], "hu_window": [-100, 200], "patch_size": [32, 32, 32]}) == PreprocessingConfig(
        spacing_mm=(2.0, 2.0, 2.0), hu_window=(-100.0, 200.0), patch_size=(32, 32, 32))


def test_import_keeps_the_source_in_history_model_card_and_licences(imported, zoo):
    version = Bundle.open_or_raise(imported).load()
    entry = version.history[0]
    assert entry["kind"] == "import" and entry["source"]["name"] == "Tiny whole body CT segmentation"
    assert entry["source"]["files_sha256"]["models/model.pt"] == hashlib.sha256((zoo / "models" / "model.pt").read_bytes()).hexdigest()
    assert entry["metrics"]["max_logit_difference_to_source"] < 1e-4
    assert any("dropout_prob 0.2" in note for note in entry["notes"])
    assert (version.path / "docs" / "licences" / "LICENSE").read_text() == LICENCE
    assert (version.path / "docs" / "licences" / "docs_data_license.txt").is_file()
    card = (version.path / "docs" / "README.md").read_text()
    assert "## Source" in card and "Tiny whole body CT segmentation" in card and "versions/1.0.0/docs/licences/LICENSE" in card
    assert "NormalizeIntensity(nonzero=True" in card
    assert not version.prototypes_path.exists()  # no data at import time: bootstrapped at the first `ciss learn`


def test_imported_bundle_reads_without_torch_and_verifies(imported):
    assert [v["status"] for v in verify_bundle(imported)] == ["ok"]
    assert describe_bundle(imported).history[0].kind == "import"


def test_weights_map_onto_the_engine_network_by_name():
    network = source_network()
    mapped = engine_state_dict(network.state_dict())
    assert {k for k in mapped if not k.startswith("backbone.")} == {"feature_head.0.weight", "feature_head.0.bias", "classifier.weight", "classifier.bias"}
    torch.testing.assert_close(mapped["classifier.weight"], network.conv_final[2].conv.weight)


def _las_phantom_ct(path: Path) -> Path:
    """A small oblique phantom CT stored left-right flipped (LAS-like): the engine must reorient and come back."""
    case = generate_case(3, shape=(56, 48, 40), spacing=(6.0, 6.0, 6.0), oblique_degrees=12.0)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = case.image.shape[0] - 1
    nib.save(nib.Nifti1Image(np.ascontiguousarray(case.image[::-1]), case.affine @ flip), str(path))
    return path


def _source_tool_segmentation(zoo: Path, ct: Path, output_dir: Path) -> np.ndarray:
    """The source bundle's own pipeline: monai.bundle's ConfigParser builds its preprocessing, network, inferer and
    postprocessing (Invertd, SaveImaged) from its inference.json; only the evaluator loop (pytorch-ignite, not
    installed here) is replaced by the same calls, under the autocast `ciss segment` uses on this device."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(zoo / "configs" / "inference.json"))
    parser["bundle_root"], parser["output_dir"] = str(zoo), str(output_dir)
    preprocessing, postprocessing = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")
    network, inferer = parser.get_parsed_content("network_def").eval(), parser.get_parsed_content("inferer")
    network.load_state_dict(torch.load(zoo / "models" / "model.pt", weights_only=True))
    data = preprocessing({"image": str(ct)})
    device = torch.device("cpu")
    with torch.no_grad(), autocast(device, autocast_dtype(device)):
        data["pred"] = inferer(data["image"][None], network)[0]
    postprocessing(data)
    (saved,) = output_dir.rglob("*.nii.gz")
    return np.asarray(nib.load(str(saved)).dataobj).astype(np.uint8)


# An 8 mm grid keeps the phantom to a few windows (SwinUNETR's are multiples of 32).
SOURCE_CONFIGS = {
    "whole_body": inference_config, "window_first": window_first_config,
    "unet": lambda: inference_config(network_def=UNET_DEF), "dynunet": lambda: inference_config(pixdim=8.0, network_def=DYNUNET_DEF),
    "swin_unetr": lambda: inference_config(pixdim=8.0, roi=[64, 32, 32], network_def=SWIN_UNETR_DEF),
}


@pytest.mark.parametrize("config", SOURCE_CONFIGS.values(), ids=SOURCE_CONFIGS.keys())
def test_ciss_segment_agrees_with_the_source_tools_own_inference(config, tmp_path):
    zoo = write_zoo_bundle(tmp_path / "zoo", config=config())
    assert run_cli("import", "-i", zoo, "-o", tmp_path / "imported", "--quiet") == 0
    ct = _las_phantom_ct(tmp_path / "ct.nii.gz")
    assert run_cli("segment", "-b", tmp_path / "imported", "-i", ct, "-o", tmp_path / "ours.nii.gz", "--no-preview", "--quiet", "--device", "cpu") == 0
    ours = nib.load(str(tmp_path / "ours.nii.gz"))
    reference = _source_tool_segmentation(zoo, ct, tmp_path / "eval")
    assert ours.shape == reference.shape and np.allclose(ours.affine, nib.load(str(ct)).affine)
    assert len(np.unique(reference)) >= 3  # the comparison covers several classes, not one flat label
    agreement = float((np.asarray(ours.dataobj) == reference).mean())
    assert agreement >= 0.995, agreement


def test_import_reports_progress_and_done_as_jsonl(zoo, tmp_path, capsys):
    assert run_cli("import", "-i", zoo, "-o", tmp_path / "out", "--progress", "jsonl") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["step"] for e in events if e["event"] == "progress"] == [0, 1, 2, 3, 4]
    assert events[-1] == {"event": "done", "bundle": str(tmp_path / "out"), "version": "1.0.0", "organs": ["spleen", "kidney_right", "kidney_left", "tumour_bed"],
                          "source": "Tiny whole body CT segmentation"}


def test_import_refuses_a_non_empty_output_and_accepts_an_empty_one(zoo, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists and is not empty") as caught:
        import_monai_bundle(zoo, taken, sink=QUIET)
    assert "new folder" in caught.value.hint and sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_monai_bundle(zoo, empty, sink=QUIET).version == "1.0.0"


def test_a_refused_import_leaves_no_output(zoo, tmp_path):
    (tmp_path / "zoo").mkdir()
    broken = write_zoo_bundle(tmp_path / "zoo" / "b", channels=CHANNELS[:-1])
    with pytest.raises(InputError):
        import_monai_bundle(broken, tmp_path / "out", sink=QUIET)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["zoo"]


def test_a_yaml_config_imports_like_json(tmp_path):
    yaml = pytest.importorskip("yaml")
    source = write_zoo_bundle(tmp_path / "zoo", config=inference_config(pixdim=4.0, roi=16))
    config = json.loads((source / "configs" / "inference.json").read_text())
    (source / "configs" / "inference.json").unlink()
    (source / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    version = import_monai_bundle(source, tmp_path / "out", sink=QUIET)
    assert version.settings.preprocessing["spacing_mm"] == [4.0, 4.0, 4.0] and version.settings.preprocessing["patch_size"] == [16, 16, 16]
