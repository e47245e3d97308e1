"""``ciss learn`` on an imported model: its prototypes are bootstrapped from the step's CTs, the step is
recorded, and the new version loads and segments."""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ciss_test_helpers import run_cli
from zoo_bundles import DYNUNET_DEF, NETWORK_DEF, UNET_DEF, inference_config, write_zoo_bundle

from ciss_engine.bundle import Bundle
from ciss_engine.inference import load_network
from ciss_engine.network import grow_classifier
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


def _import_and_learn_liver(case: Path, tmp_path: Path, network_def: dict = NETWORK_DEF) -> Path:
    """A zoo bundle of ``network_def`` imported, then liver learned on ``case`` (2 iterations): the bundle."""
    # An 8 mm grid keeps the phantom to a couple of 32³ windows: the test pins wiring, not accuracy.
    source = write_zoo_bundle(tmp_path / "zoo", config=inference_config(pixdim=8.0, network_def=network_def))
    bundle = tmp_path / "site_model"
    assert run_cli("import", "-i", source, "-o", bundle, "--quiet") == 0
    code = run_cli("learn", "-b", bundle, "--organ", "liver", "-i", case / "image.nii.gz", "-l", _liver_only(case, tmp_path / "liver.nii.gz"),
                   "--iterations", "2", "--batch-size", "1", "--accept-forgetting", "--quiet")
    assert code == 0
    return bundle


def _segments(bundle: Path, case: Path, output: Path) -> np.ndarray:
    assert run_cli("segment", "-b", bundle, "-i", case / "image.nii.gz", "-o", output, "--no-preview", "--quiet") == 0
    label = nib.load(str(output))
    assert label.shape == nib.load(str(case / "image.nii.gz")).shape
    return np.asarray(label.dataobj)


def test_learn_on_an_imported_model_bootstraps_prototypes_and_segments(phantom_cohort, tmp_path):
    case = phantom_cohort[2]
    bundle = _import_and_learn_liver(case, tmp_path)
    handle = Bundle.open_or_raise(bundle)
    assert handle.versions() == ["1.0.0", "1.1.0"] and handle.current_version == "1.1.0"
    version = handle.load()
    assert version.registry.names == ["spleen", "kidney_right", "kidney_left", "tumour_bed", "liver"]
    step = version.history[-1]
    assert step["kind"] == "incremental" and step["prototypes"] == BOOTSTRAP_NOTE and step["parent_version"] == "1.0.0"
    assert step["forgetting_guard"]["postprocessed"] == []  # an imported model's output is judged as the source tool gives it
    assert version.history[0]["kind"] == "import" and version.settings.source["name"] == "Tiny whole body CT segmentation"
    prototypes = version.load_prototypes()
    assert prototypes["prototypes"].shape == (6, 8) and prototypes["prototypes_pre_activation"].shape == (6, 8)
    # The old model's confident voxels gave the background and the old organs it predicts on this CT their prototypes.
    assert int(prototypes["counts"][0]) > 0 and int((prototypes["counts"][1:5] > 0).sum()) >= 2
    assert torch.all(prototypes["prototypes"] >= 0)  # post-activation: the ReLU of the tap
    assert version.settings.preprocessing["intensity"][0]["op"] == "normalize_intensity"  # the step kept the source's preprocessing
    assert int(_segments(bundle, case, tmp_path / "segmented.nii.gz").max()) <= 5


@pytest.mark.parametrize("network_def", [DYNUNET_DEF, UNET_DEF], ids=["dynunet", "unet"])
def test_learn_grows_every_head_of_an_imported_monai_network(network_def, phantom_cohort, tmp_path):
    case = phantom_cohort[2]
    bundle = _import_and_learn_liver(case, tmp_path, network_def)
    handle = Bundle.open_or_raise(bundle)
    imported, learned = handle.load("1.0.0"), handle.load()
    assert learned.version == "1.1.0" and learned.registry.names[-1] == "liver"
    assert learned.settings.network == {**imported.settings.network, "out_channels": 6}
    network = load_network(learned, torch.device("cpu"))  # the grown weights fit the grown network, every copy of every head
    assert network.num_classes == 6 and [head.out_channels for head in network.heads()] == [6] * len(network.heads())
    assert len(network.heads()) == (2 if network_def is DYNUNET_DEF else 1)  # DynUNet's deep-supervision head grew too
    assert learned.load_prototypes()["prototypes"].shape == (6, network.feature_channels)
    # MiB's initialisation: the imported model grown by one organ gives the old organs' logits unchanged.
    old = load_network(imported, torch.device("cpu"))
    patch = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = old(patch)
        after = grow_classifier(old, 1)(patch)
    torch.testing.assert_close(after[:, 1:5], before[:, 1:5])
    assert int(_segments(bundle, case, tmp_path / "segmented.nii.gz").max()) <= 5
