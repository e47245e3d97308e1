"""``ciss import --format nnunet`` and ``ciss export-model --format nnunet`` against nnU-Net itself: a tiny model
that nnunetv2's own planner and trainer made (nnunet_models.py), its own predictor for parity, its own command
line for the exported folder, and one refusal per kind of model or file the engine cannot take."""
from __future__ import annotations

import json
import os
import pydoc
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import PicklePayload, run_cli
from nnunet_models import LABELS, make_nnunet_model, predict_with_nnunet

from ciss_engine.bundle import Bundle
from ciss_engine.errors import InputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.importers.nnunet_model import import_nnunet_model
from ciss_engine.inference import load_network
from ciss_engine.training.prototype_bootstrap import BOOTSTRAP_NOTE

pytest.importorskip("nnunetv2", reason="nnunetv2 is a test dependency (scripts/setup_env.sh installs it)")


@pytest.fixture(scope="module")
def nnunet_model(tmp_path_factory, phantom_cohort) -> Path:
    """nnU-Net's own 3d_fullres PlainConvUNet on two phantom CTs (organs 1-4), trained briefly."""
    return make_nnunet_model(tmp_path_factory.mktemp("nnunet"), phantom_cohort[:2])


@pytest.fixture(scope="module")
def imported(tmp_path_factory, nnunet_model) -> Path:
    bundle = tmp_path_factory.mktemp("imported") / "bundle"
    assert run_cli("import", "-i", nnunet_model, "-o", bundle, "--quiet") == 0  # --format auto finds nnU-Net
    return bundle


def _resampled(image: Path, spacing_mm: float, out: Path) -> Path:
    """The CT on another grid (RAS, ``spacing_mm``), so both tools must resample it to the plans' spacing."""
    from monai.transforms import Spacing

    from ciss_engine.preprocessing import as_meta_tensor

    resampled = Spacing(pixdim=(spacing_mm,) * 3, mode="bilinear", padding_mode="border")(as_meta_tensor(nib.load(str(image))).float())
    nib.save(nib.Nifti1Image(np.asarray(resampled[0]).astype(np.float32), np.asarray(resampled.affine)), str(out))
    return out


def _agreement(a: Path, b: Path) -> float:
    first, second = (np.asarray(nib.load(str(p)).dataobj) for p in (a, b))
    assert first.shape == second.shape
    return float((first == second).mean())


def test_imported_model_segments_as_nnunets_own_predictor(imported, phantom_cohort, tmp_path):
    ct = _resampled(phantom_cohort[1] / "image.nii.gz", 5.0, tmp_path / "ct.nii.gz")
    ours, theirs = tmp_path / "ours.nii.gz", tmp_path / "theirs.nii.gz"
    assert run_cli("segment", "-b", imported, "-i", ct, "-o", ours, "--no-preview", "--quiet") == 0
    predict_with_nnunet(Path(Bundle.open_or_raise(imported).load().settings.source["folder"]), ct, theirs)
    assert len(np.unique(np.asarray(nib.load(str(theirs)).dataobj))) >= 3  # a model with organ structure, not all background
    assert _agreement(ours, theirs) >= 0.995


@pytest.mark.parametrize("shape, current, target, new, order", [
    ((20, 24, 18), (5.0, 5.0, 5.0), (8.0, 8.0, 8.0), (12, 15, 11), 3),  # isotropic, cubic: a CT on its way in
    ((20, 24, 10), (1.0, 1.0, 4.0), (1.5, 1.5, 1.5), (13, 16, 27), 3),  # anisotropic input: slices, then nearest along z
    ((13, 16, 27), (1.5, 1.5, 1.5), (1.0, 1.0, 4.0), (20, 24, 10), 1),  # anisotropic target, linear: logits on their way back
])
def test_resampling_is_nnunets_own(shape, current, target, new, order):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    from ciss_engine.nnunet_resampling import resample

    volume = np.random.default_rng(0).normal(size=shape)
    theirs = resample_data_or_seg_to_shape(volume[None], new, current, target, is_seg=False, order=order, order_z=0, force_separate_z=None)[0]
    np.testing.assert_allclose(resample(volume, new, current, target, order), theirs, rtol=0, atol=1e-6)


def test_import_records_the_model_by_label_value_and_its_preprocessing(imported, nnunet_model):
    version = Bundle.open_or_raise(imported).load()
    plans = json.loads((nnunet_model / "plans.json").read_text())
    configuration = plans["configurations"]["3d_fullres"]
    assert version.version == "1.0.0" and version.registry.names == [n for n in LABELS if n != "background"]
    assert [o.label for o in version.registry.organs] == [LABELS[n] for n in version.registry.names]
    pre = version.settings.preprocessing
    # nnU-Net's axes are the reader's reversed array axes (transpose_forward is the identity here).
    assert plans["transpose_forward"] == [0, 1, 2]
    assert pre["spacing_mm"] == configuration["spacing"][::-1] and pre["patch_size"] == configuration["patch_size"][::-1]
    properties = plans["foreground_intensity_properties_per_channel"]["0"]
    (step,) = pre["intensity"]
    assert step["op"] == "scale_intensity_range" and step["a_min"] == properties["percentile_00_5"] and step["clip"] is True
    assert step["b_min"] == pytest.approx((properties["percentile_00_5"] - properties["mean"]) / properties["std"])
    assert pre["intensity_before_resampling"] is True and pre["window_mirroring_axes"] == [0, 1, 2] and pre["resampling"] == "nnunet"
    history = version.history[0]
    assert history["kind"] == "import" and history["metrics"]["max_logit_difference_to_source"] < 1e-4
    assert set(history["source"]["files_sha256"]) == {"plans.json", "dataset.json", "fold_0/checkpoint_final.pth"}
    assert version.settings.source["nnunet"]["plans"] == plans


def test_a_residual_encoder_model_is_imported_with_the_librarys_own_outputs(phantom_cohort, tmp_path):
    """nnU-Net's ResEnc planner (nnUNetPlannerResEncM); untrained weights: the mapping, not accuracy, is checked."""
    folder = make_nnunet_model(tmp_path / "resenc", phantom_cohort[:2], architecture="ResidualEncoderUNet", iterations=0)
    version = import_nnunet_model(folder, tmp_path / "bundle", fold="0", sink=EventSink(ProgressMode.QUIET))
    assert version.settings.network["architecture"] == "ResidualEncoderUNet"
    assert version.history[0]["metrics"]["max_logit_difference_to_source"] < 1e-4
    assert run_cli("segment", "-b", tmp_path / "bundle", "-i", phantom_cohort[0] / "image.nii.gz", "-o", tmp_path / "seg.nii.gz", "--no-preview", "--quiet") == 0


def test_labels_are_read_by_value_not_by_position(nnunet_model, tmp_path):
    folder = shutil.copytree(nnunet_model, tmp_path / "model")
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset["labels"] = dict(reversed(list(dataset["labels"].items())))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    version = import_nnunet_model(folder, tmp_path / "bundle", fold="0", sink=EventSink(ProgressMode.QUIET))
    assert {o.name: o.label for o in version.registry.organs} == {n: v for n, v in LABELS.items() if n != "background"}


def test_feature_tap_is_the_norm_output_whose_activation_feeds_the_final_convolution(imported):
    network = load_network(Bundle.open_or_raise(imported).load(), torch.device("cpu"))
    image = torch.randn((1, 1, *network.config.downsampling()), generator=torch.Generator().manual_seed(0)).repeat(1, 1, 2, 2, 2)
    with torch.no_grad():
        logits, features = network.forward_with_features(image)
        last_block = network.unet.decoder.stages[-1].convs[-1]
        engine_to_model = network.model_axis_order
        expected = network.classifier(last_block.nonlin(features.permute(engine_to_model))).permute(network.engine_axis_order)
    assert features.shape[1] == network.feature_channels == network.classifier.in_channels
    assert bool((features < 0).any())  # before the non-linearity
    torch.testing.assert_close(logits, expected)
    with torch.no_grad():
        staged_logits, _, stages = network.forward_with_stages(image)
        skips = network.unet.encoder(image.permute(engine_to_model))
    torch.testing.assert_close(staged_logits, logits)
    assert len(stages) == len(skips) > 1
    for stage, skip in zip(stages, skips):  # nnU-Net's skips, on the engine's axes
        torch.testing.assert_close(stage, skip.permute(network.engine_axis_order))


def test_learn_grows_every_head_and_the_export_runs_in_nnunet(imported, phantom_cohort, tmp_path):
    bundle = shutil.copytree(imported, tmp_path / "bundle")
    case = phantom_cohort[2]
    label = nib.load(str(case / "label_seg8.nii.gz"))
    liver = tmp_path / "liver.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(label.dataobj) == 7).astype(np.uint8), label.affine), str(liver))
    assert run_cli("learn", "-b", bundle, "--organ", "liver", "-i", case / "image.nii.gz", "-l", liver,
                   "--iterations", "2", "--batch-size", "1", "--accept-forgetting", "--quiet") == 0
    version = Bundle.open_or_raise(bundle).load()
    assert version.version == "1.1.0" and version.history[-1]["prototypes"] == BOOTSTRAP_NOTE
    heads = {k: v.shape[0] for k, v in version.load_state_dict().items() if ".seg_layers." in k}
    assert len(heads) >= 4 and set(heads.values()) == {6}  # every deep-supervision head widened the same way

    exported = tmp_path / "Dataset987_Phantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    assert run_cli("export-model", "--format", "nnunet", "-b", bundle, "-o", exported, "--quiet") == 0
    dataset = json.loads((exported / "dataset.json").read_text())
    assert dataset["labels"] == {**LABELS, "liver": 5}
    # nnU-Net's own command line runs the grown model.
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copyfile(case / "image.nii.gz", inputs / "case_0000.nii.gz")
    env = {**os.environ, "OMP_NUM_THREADS": "1", **{k: str(tmp_path) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}}
    command = [str(Path(sys.executable).parent / "nnUNetv2_predict_from_modelfolder"), "-i", str(inputs), "-o", str(outputs), "-m", str(exported),
               "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar", "--disable_tta"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    predicted = nib.load(str(outputs / "case.nii.gz"))
    assert predicted.shape == nib.load(str(case / "image.nii.gz")).shape and int(np.asarray(predicted.dataobj).max()) <= 5
    # The weights nnU-Net loads are the grown version's: its network, built by nnU-Net from the exported plans and
    # dataset.json, gives the engine's logits.
    checkpoint = torch.load(exported / "fold_0" / "checkpoint_final.pth", weights_only=True)
    ours = load_network(version, torch.device("cpu"))
    theirs = type(ours.unet)(input_channels=1, num_classes=6, deep_supervision=False, **_arch_kwargs(exported))
    theirs.load_state_dict(checkpoint["network_weights"])
    probe = torch.randn((1, 1, *[2 * d for d in ours.config.downsampling()]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(probe), theirs.eval()(probe.permute(ours.model_axis_order)).permute(ours.engine_axis_order))


def _arch_kwargs(model_folder: Path) -> dict:
    """nnU-Net's own reading of the plans' architecture arguments (its PlansManager resolves the op names)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    configuration = PlansManager(str(model_folder / "plans.json")).get_configuration("3d_fullres")
    kwargs = dict(configuration.network_arch_init_kwargs)
    for key in configuration.network_arch_init_kwargs_req_import:
        kwargs[key] = pydoc.locate(kwargs[key]) if kwargs[key] is not None else None
    return kwargs


def _edited(nnunet_model: Path, tmp_path: Path, file: str, edit) -> Path:
    folder = shutil.copytree(nnunet_model, tmp_path / "model")
    data = json.loads((folder / file).read_text())
    edit(data)
    (folder / file).write_text(json.dumps(data))
    return folder


def _refused(folder: Path, tmp_path: Path, match: str, fold: str = "0") -> None:
    with pytest.raises(InputError, match=match):
        import_nnunet_model(folder, tmp_path / "bundle", fold=fold, sink=EventSink(ProgressMode.QUIET))
    assert not (tmp_path / "bundle").exists()


def test_a_missing_fold_names_the_trained_ones(nnunet_model, tmp_path):
    _refused(nnunet_model, tmp_path, r"fold 3 .* has no checkpoint_final.pth", fold="3")


@pytest.mark.parametrize("file, edit, match", [
    ("dataset.json", lambda d: d["labels"].update({"liver": 5}), r"lists 6 labels but the network .* has 5 outputs"),
    ("dataset.json", lambda d: d["labels"].update({"kidneys": [2, 3]}), r"region-based"),
    ("dataset.json", lambda d: d["labels"].update({"ignore": 5}), r"ignore label"),
    ("plans.json", lambda d: d["configurations"]["3d_fullres"].update({"previous_stage": "3d_lowres"}), r"cascade"),
    ("plans.json", lambda d: d["configurations"]["3d_fullres"]["architecture"].update({"network_class_name": "my_site.networks.Net"}), r"not from dynamic_network_architectures"),
    ("plans.json", lambda d: d["configurations"]["3d_fullres"]["architecture"].update(
        {"network_class_name": "dynamic_network_architectures.architectures.unet.UNetPlusPlus"}), r"not one of PlainConvUNet, ResidualEncoderUNet"),
    ("plans.json", lambda d: d["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update({"nonlin": "os.system"}), r"nonlin 'os.system' is not one of"),
    ("plans.json", lambda d: d["configurations"]["3d_fullres"].update({"normalization_schemes": ["RescaleTo01Normalization"]}), r"normalisation"),
])
def test_models_the_engine_cannot_reproduce_are_refused_by_name(nnunet_model, tmp_path, file, edit, match):
    _refused(_edited(nnunet_model, tmp_path, file, edit), tmp_path, match)


def test_a_checkpoint_that_would_import_code_is_refused_and_never_runs(nnunet_model, tmp_path):
    folder = shutil.copytree(nnunet_model, tmp_path / "model")
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    marker = tmp_path / "payload_ran"
    saved = torch.load(checkpoint, weights_only=False)
    torch.save({**saved, "extra": PicklePayload(marker)}, checkpoint)
    _refused(folder, tmp_path, r"would import posix.system, outside the allow-list")
    assert not marker.exists()


def test_export_refuses_bundles_not_imported_from_nnunet(tiny_bundle, tmp_path):
    code = run_cli("export-model", "-b", tiny_bundle, "-o", tmp_path / "model", "--quiet")
    assert code == 3 and not (tmp_path / "model").exists()
