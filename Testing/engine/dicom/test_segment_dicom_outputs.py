"""``ciss segment --output-type nifti,rtstruct,seg`` on a DICOM series: the DICOM objects match the label map."""
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from ciss_test_helpers import record_checksums, run_cli

from ciss_engine.bundle import Bundle
from ciss_engine.dicom import read_ct_series, read_rtstruct, read_seg
from ciss_engine.errors import ExitCode
from ciss_engine.inference import Segmenter, sliding_window_outputs
from ciss_engine.phantom import generate_case
from ciss_engine.preprocessing import PreprocessingConfig, image_to_network

from .synthetic_dicom import dice, write_ct_series


def _bundle_splitting_on_a_feature(tiny_bundle: Path, ct_folder: Path, tmp_path: Path) -> Path:
    """A copy of the tiny bundle that calls spleen where one feature the classifier reads (ReLU of the tap) is
    above its median on this CT, else background: the channel most often positive, so that median is > 0.

    The prediction is then about half spleen in an anatomy-shaped, asymmetric pattern, so a flipped or
    transposed DICOM object cannot match it by chance (an all-spleen map would).
    """
    bundle = tmp_path / "split_on_feature"
    shutil.copytree(tiny_bundle, bundle)
    version = Bundle.open_or_raise(bundle).load()
    network_input = image_to_network(read_ct_series(ct_folder), PreprocessingConfig.from_json(version.settings.preprocessing))
    segmenter = Segmenter(version, torch.device("cpu"))
    _, features = sliding_window_outputs(segmenter.network, network_input[None], patch_size=segmenter.preprocessing.patch_size,
                                         device=torch.device("cpu"), with_features=True)
    model = bundle / "versions" / version.version / "models" / "model.pt"
    state = torch.load(model, weights_only=True)
    read = features[0].float().relu()
    channel = int((read > 0).flatten(1).float().mean(1).argmax())
    threshold = float(read[channel].median())
    assert threshold > 0, "the test needs a feature that is positive on most voxels"
    state["classifier.weight"].zero_()
    state["classifier.weight"][1, channel] = 1.0
    state["classifier.bias"].fill_(-1e4)
    state["classifier.bias"][0] = 0.0
    state["classifier.bias"][1] = -threshold
    torch.save(state, model)
    record_checksums(model.parent.parent)
    return bundle


def test_segment_writes_rtstruct_and_seg_matching_the_label_map(tiny_bundle, tmp_path):
    case = generate_case(4, shape=(56, 48, 40), spacing=(6.0, 6.0, 6.0))
    series = write_ct_series(tmp_path / "dicom", case.image[:, :, 14:22].astype(np.int16), pixel_spacing=(6.0, 6.0), slice_step=6.0)
    bundle = _bundle_splitting_on_a_feature(tiny_bundle, series.folder, tmp_path)
    output = tmp_path / "out" / "case.nii.gz"
    assert run_cli("segment", "-b", bundle, "-i", series.folder, "-o", output, "--output-type", "nifti,rtstruct,seg", "--no-preview", "--quiet") == 0
    label = np.asarray(nib.load(str(output)).dataobj)
    spleen = label == 1
    assert label.shape == (56, 48, 8) and set(np.unique(label)) == {0, 1} and 0.2 < spleen.mean() < 0.8
    assert all(dice(spleen, np.flip(spleen, axis)) < 0.9 for axis in range(3)), "the test needs a pattern a flip would change"
    segments = read_seg(tmp_path / "out" / "case_dicom" / "seg.dcm", series.folder)
    assert np.array_equal(segments["spleen"], spleen)
    contours = read_rtstruct(tmp_path / "out" / "case_dicom" / "rtstruct.dcm", series.folder)
    assert set(contours) == {"spleen"}
    assert dice(contours["spleen"], spleen) >= 0.9


def test_dicom_output_types_need_a_dicom_input(tiny_bundle, phantom_cohort, tmp_path, capsys):
    code = run_cli("segment", "-b", tiny_bundle, "-i", phantom_cohort[0] / "image.nii.gz", "-o", tmp_path / "o.nii.gz", "--output-type", "rtstruct", "--quiet")
    assert code == ExitCode.INPUT_ERROR
    assert "needs a DICOM series as input" in capsys.readouterr().err
