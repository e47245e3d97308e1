"""``ciss learn`` on an imported model: its prototypes are bootstrapped from the step's CTs, the step is
recorded, and the new version loads and segments."""
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from ciss_test_helpers import run_cli
from zoo_bundles import inference_config, write_zoo_bundle

from ciss_engine.bundle import Bundle
from ciss_engine.prototypes import IGNORE_INDEX
from ciss_engine.training.prototype_bootstrap import BOOTSTRAP_NOTE, class_thresholds, confident_labels


def test_confident_voxels_are_those_at_or_below_their_class_median_entropy():
    prediction = torch.tensor([[0, 0, 0, 1, 1, 2]])
    entropy = torch.tensor([[0.1, 0.5, 0.9, 0.2, 0.4, 0.7]])
    thresholds = class_thresholds([prediction], [entropy], num_classes=4)
    torch.testing.assert_close(thresholds, torch.tensor([0.5, 0.3, 0.7, -1.0], dtype=torch.float64), atol=1e-6, rtol=0)
    labels = confident_labels(prediction, entropy.double(), thresholds)
    assert labels.tolist() == [[0, 0, IGNORE_INDEX, 1, IGNORE_INDEX, 2]]


def _liver_only(case: Path, out: Path) -> Path:
    """The new organ as a site would label it: liver (seg8 value 7) = 1, everything else 0."""
    image = nib.load(str(case / "label_seg8.nii.gz"))
    nib.save(nib.Nifti1Image((np.asarray(image.dataobj) == 7).astype(np.uint8), image.affine), str(out))
    return out


def test_learn_on_an_imported_model_bootstraps_prototypes_and_segments(phantom_cohort, tmp_path):
    # An 8 mm grid keeps the phantom to a couple of 32³ windows: the test pins wiring, not accuracy.
    source = write_zoo_bundle(tmp_path / "zoo", config=inference_config(pixdim=8.0))
    bundle = tmp_path / "site_model"
    assert run_cli("import", "-i", source, "-o", bundle, "--quiet") == 0
    case = phantom_cohort[2]
    code = run_cli("learn", "-b", bundle, "--organ", "liver", "-i", case / "image.nii.gz", "-l", _liver_only(case, tmp_path / "liver.nii.gz"),
                   "--iterations", "2", "--batch-size", "1", "--accept-forgetting", "--quiet")
    assert code == 0
    handle = Bundle.open_or_raise(bundle)
    assert handle.versions() == ["1.0.0", "1.1.0"] and handle.current_version == "1.1.0"
    version = handle.load()
    assert version.registry.names == ["spleen", "kidney_right", "kidney_left", "tumour_bed", "liver"]
    step = version.history[-1]
    assert step["kind"] == "incremental" and step["prototypes"] == BOOTSTRAP_NOTE and step["parent_version"] == "1.0.0"
    assert version.history[0]["kind"] == "import" and version.settings["source"]["name"] == "Tiny whole body CT segmentation"
    prototypes = version.load_prototypes()
    assert prototypes["prototypes"].shape == (6, 8) and prototypes["prototypes_pre_activation"].shape == (6, 8)
    # The old model's confident voxels gave the background and the old organs it predicts on this CT their prototypes.
    assert int(prototypes["counts"][0]) > 0 and int((prototypes["counts"][1:5] > 0).sum()) >= 2
    assert torch.all(prototypes["prototypes"] >= 0)  # post-activation: the ReLU of the tap
    assert version.settings["preprocessing"]["intensity"][0]["op"] == "normalize_intensity"  # the step kept the source's preprocessing
    output = tmp_path / "segmented.nii.gz"
    assert run_cli("segment", "-b", bundle, "-i", case / "image.nii.gz", "-o", output, "--no-preview", "--quiet") == 0
    label = nib.load(str(output))
    assert label.shape == nib.load(str(case / "image.nii.gz")).shape and int(np.asarray(label.dataobj).max()) <= 5
