"""Outputs land exactly on the input's own grid, whatever its orientation."""

import nibabel as nib
import numpy as np
import pytest
from ciss_test_helpers import real_case, run_cli

from ciss_engine.phantom import generate_case
from ciss_engine.preprocessing import PreprocessingConfig, label_to_input_grid, label_to_network


def _segment(tiny_bundle, image_path, tmp_path):
    output = tmp_path / "seg.nii.gz"
    assert run_cli("segment", "-b", tiny_bundle, "-i", image_path, "-o", output, "--quiet") == 0
    return nib.load(str(image_path)), nib.load(str(output))


def test_las_real_ct_round_trip_keeps_shape_and_affine(tiny_bundle, tmp_path):
    case = real_case("chest_4x")
    image, seg = _segment(tiny_bundle, case / "image.nii.gz", tmp_path)
    assert nib.aff2axcodes(image.affine) == ("L", "A", "S")
    assert seg.shape == image.shape
    np.testing.assert_array_equal(seg.affine, image.affine)


def test_oblique_case_round_trip(tiny_bundle, tmp_path):
    case = generate_case(3, shape=(48, 48, 40), oblique_degrees=20.0)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(case.image, case.affine), str(path))
    image, seg = _segment(tiny_bundle, path, tmp_path)
    assert seg.shape == image.shape
    np.testing.assert_allclose(seg.affine, case.affine, atol=1e-6)


@pytest.mark.parametrize("oblique", [0.0, 25.0])
def test_labels_resampled_to_network_and_back_keep_organs(oblique):
    case = generate_case(1, shape=(128, 112, 80), spacing=(2.5, 2.5, 3.0), oblique_degrees=oblique)
    image = nib.Nifti1Image(case.image, case.affine)
    network = label_to_network(image, case.label, PreprocessingConfig(spacing_mm=(3.0, 3.0, 3.0)))
    back = label_to_input_grid(network, image)
    assert back.shape == case.label.shape
    for organ in (1, 7):  # spleen, liver: large enough that a 3 mm round trip keeps them
        truth, got = case.label == organ, back == organ
        assert 2 * (truth & got).sum() / (truth.sum() + got.sum()) > 0.85


def test_same_grid_input_is_identity():
    case = generate_case(2, shape=(40, 40, 32))
    image = nib.Nifti1Image(case.image, case.affine)
    config = PreprocessingConfig(spacing_mm=tuple(float(z) for z in image.header.get_zooms()))
    np.testing.assert_array_equal(label_to_input_grid(label_to_network(image, case.label, config), image), case.label)
