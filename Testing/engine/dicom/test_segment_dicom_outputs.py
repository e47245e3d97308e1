"""``ciss segment --output-type nifti,rtstruct,seg`` on a DICOM series: the DICOM objects match the label map."""
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from ciss_test_helpers import run_cli

from ciss_engine.dicom import read_rtstruct, read_seg
from ciss_engine.errors import ExitCode
from ciss_engine.phantom import generate_case

from .synthetic_dicom import write_ct_series


def _bundle_predicting_spleen_in_bright_tissue(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the tiny bundle whose classifier calls every voxel spleen: predictions known in advance."""
    bundle = tmp_path / "spleen_everywhere"
    shutil.copytree(tiny_bundle, bundle)
    model = bundle / "versions" / "1.0.0" / "models" / "model.pt"
    state = torch.load(model, weights_only=True)
    state["classifier.bias"][1] = 1e4
    torch.save(state, model)
    return bundle


def test_segment_writes_rtstruct_and_seg_matching_the_label_map(tiny_bundle, tmp_path):
    case = generate_case(4, shape=(56, 48, 40), spacing=(6.0, 6.0, 6.0))
    series = write_ct_series(tmp_path / "dicom", case.image[:, :, 14:22].astype(np.int16), pixel_spacing=(6.0, 6.0), slice_step=6.0)
    bundle = _bundle_predicting_spleen_in_bright_tissue(tiny_bundle, tmp_path)
    output = tmp_path / "out" / "case.nii.gz"
    assert run_cli("segment", "-b", bundle, "-i", series.folder, "-o", output, "--output-type", "nifti,rtstruct,seg", "--no-preview", "--quiet") == 0
    label = np.asarray(nib.load(str(output)).dataobj)
    assert label.shape == (56, 48, 8) and (label == 1).all()
    contours = read_rtstruct(tmp_path / "out" / "case_dicom" / "rtstruct.dcm", series.folder)
    assert set(contours) == {"spleen"}
    spleen = label == 1
    assert 2 * (contours["spleen"] & spleen).sum() / (contours["spleen"].sum() + spleen.sum()) >= 0.98
    segments = read_seg(tmp_path / "out" / "case_dicom" / "seg.dcm", series.folder)
    assert np.array_equal(segments["spleen"], spleen)


def test_dicom_output_types_need_a_dicom_input(tiny_bundle, phantom_cohort, tmp_path, capsys):
    code = run_cli("segment", "-b", tiny_bundle, "-i", phantom_cohort[0] / "image.nii.gz", "-o", tmp_path / "o.nii.gz", "--output-type", "rtstruct", "--quiet")
    assert code == ExitCode.INPUT_ERROR
    assert "needs a DICOM series as input" in capsys.readouterr().err
