"""Each bad input gets a clear error naming the file and the fix, and leaves no partial output."""
import errno
import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ciss_engine.atomic import ensure_writable_dir, write_atomic
from ciss_engine.errors import ExitCode, InputError, OutputError
from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.imaging import check_same_grid_or_raise, label_values_or_raise, load_volume_or_raise

from ciss_test_helpers import run_cli


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine), str(path))
    return path


def _train(tmp_path: Path, image: Path, label: Path, *extra: str) -> int:
    return run_cli("train", "-i", image, "-l", label, "--organs", "spleen=1,liver=2", "-o", tmp_path / "out", "--iterations", "1", "--patch-size", "16", "--init-filters", "8", "--quiet", *extra)


@pytest.fixture()
def ct(tmp_path):
    return _save(tmp_path / "ct.nii.gz", np.random.default_rng(0).normal(0, 50, (24, 24, 24)).astype(np.int16))


def _no_output(tmp_path: Path) -> bool:
    return not (tmp_path / "out").exists()


def test_label_with_other_shape(tmp_path, ct, capsys):
    label = _save(tmp_path / "label.nii.gz", np.ones((24, 24, 20), np.uint8))
    assert _train(tmp_path, ct, label) == ExitCode.INPUT_ERROR
    err = capsys.readouterr().err
    assert "label.nii.gz has shape (24, 24, 20) but CT" in err and "reference volume" in err
    assert _no_output(tmp_path)


def test_label_with_other_affine(tmp_path, ct):
    label = _save(tmp_path / "label.nii.gz", np.ones((24, 24, 24), np.uint8), np.diag([3.0, 3.0, 2.0, 1.0]))
    image, lab = load_volume_or_raise(ct), load_volume_or_raise(label, role="label")
    with pytest.raises(InputError, match="different geometry") as caught:
        check_same_grid_or_raise(image, lab, ct, label)
    assert "reference geometry" in caught.value.hint


def test_label_values_outside_the_run(tmp_path, ct, capsys):
    data = np.zeros((24, 24, 24), np.uint8)
    data[2:6, 2:6, 2:6] = 1
    data[10:14, 10:14, 10:14] = 7
    label = _save(tmp_path / "label.nii.gz", data)
    assert _train(tmp_path, ct, label) == ExitCode.INPUT_ERROR
    err = capsys.readouterr().err
    assert "holds values [7]" in err and "--other-labels background" in err
    assert _no_output(tmp_path)


def test_non_integer_label(tmp_path):
    label = _save(tmp_path / "prob.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(InputError, match="non-integer"):
        label_values_or_raise(load_volume_or_raise(label, role="label"), label, allowed=[1], fix="")


def test_empty_label(tmp_path, ct, capsys):
    label = _save(tmp_path / "label.nii.gz", np.zeros((24, 24, 24), np.uint8))
    assert _train(tmp_path, ct, label) == ExitCode.INPUT_ERROR
    assert "holds none of this run's organs" in capsys.readouterr().err
    assert _no_output(tmp_path)


def test_non_3d_image(tmp_path):
    path = _save(tmp_path / "series.nii.gz", np.zeros((8, 8, 8, 3), np.int16))
    with pytest.raises(InputError, match=r"shape \(8, 8, 8, 3\); a 3D volume is required"):
        load_volume_or_raise(path)


def test_corrupt_gzip(tmp_path, ct):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(ct.read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read CT .*broken.nii.gz") as caught:
        load_volume_or_raise(broken)
    assert "damaged" in caught.value.hint
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti at all" * 20))
    with pytest.raises(InputError, match="garbage.nii.gz"):
        load_volume_or_raise(garbage)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(InputError, match="CT not found: .*nope.nii.gz"):
        load_volume_or_raise(tmp_path / "nope.nii.gz")
    other = tmp_path / "scan.png"
    other.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown file type"):
        load_volume_or_raise(other)


def test_unwritable_output_directory(tmp_path, ct):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        ensure_writable_dir(blocker / "sub")


def test_full_disk_is_reported_and_leaves_no_temporary(tmp_path):
    def fill_disk(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full while writing .*result.nii.gz") as caught:
        write_atomic(tmp_path / "result.nii.gz", fill_disk)
    assert "free space" in caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_segment_into_unwritable_place_fails_before_work(tmp_path, tiny_bundle, phantom_cohort, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = run_cli("segment", "-b", tiny_bundle, "-i", phantom_cohort[0] / "image.nii.gz", "-o", blocker / "out.nii.gz", "--quiet")
    assert code == ExitCode.OUTPUT_ERROR
    assert "cannot write" in capsys.readouterr().err


def test_nrrd_input_matches_nifti(tmp_path):
    import nrrd

    data = np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10)
    # NRRD stores LPS: RAS x = -LPS x, RAS y = -LPS y.
    header = {"space": "left-posterior-superior", "space directions": np.diag([2.0, 2.5, 3.0]), "space origin": np.array([10.0, 20.0, 30.0])}
    nrrd.write(str(tmp_path / "ct.nrrd"), data, header)
    image = load_volume_or_raise(tmp_path / "ct.nrrd")
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    np.testing.assert_allclose(image.affine, [[-2, 0, 0, -10], [0, -2.5, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]])


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    path = write_atomic(tmp_path / "report.json", lambda tmp: tmp.write_text("{}"))
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def _header_only(path: Path, shape: tuple[int, ...], dtype: type = np.int16) -> Path:
    """A NIfTI of a few hundred bytes whose header claims ``shape``: nothing behind it."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_zooms((1.0,) * len(shape))
    path.write_bytes(header.binaryblock + bytes(4) + bytes(600))
    return path


def _segment_jsonl(bundle: Path, ct: Path, output: Path) -> tuple[int, list[dict]]:
    """``ciss segment`` in its own process: a MemoryError or a crash there cannot hide behind pytest."""
    result = subprocess.run([sys.executable, "-m", "ciss_engine", "segment", "-b", str(bundle), "-i", str(ct), "-o", str(output), "--progress", "jsonl"],
                            capture_output=True, text=True, timeout=120)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_header_claiming_30000_cubed_voxels_is_refused_before_reading(tmp_path, tiny_bundle):
    huge = _header_only(tmp_path / "huge.nii", (30000, 30000, 30000))
    assert huge.stat().st_size < 1024
    code, events = _segment_jsonl(tiny_bundle, huge, tmp_path / "out" / "seg.nii.gz")
    assert code == ExitCode.INPUT_ERROR
    assert "huge.nii claims 30000 x 30000 x 30000 = 2.7e+13 voxels" in events[-1]["message"] and "crop/resample" in events[-1]["hint"]


def test_header_needing_more_memory_than_is_free_is_refused(tmp_path):
    """A volume within the voxel limit that does not fit the memory left: the process is capped with
    ``ulimit -v`` (1 GiB above what it uses) and asked for a 1024 x 1024 x 512 CT."""
    big = _header_only(tmp_path / "big.nii", (1024, 1024, 512))
    code = (
        "import resource, psutil\n"
        "from ciss_engine.errors import InputError\n"
        "from ciss_engine.imaging import load_volume_or_raise\n"
        "limit = psutil.Process().memory_info().vms + 2**30\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    load_volume_or_raise({str(big)!r})\n"
        "except InputError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"big.nii needs about 3.0 GiB to load \(1024 x 1024 x 512 voxels\), but [01]\.\d GiB are free", result.stdout), result.stdout
    assert "free memory" in result.stdout


@pytest.mark.parametrize("affine, message", [
    (np.diag([0.01, 1.0, 1.0, 1.0]), r"voxel spacing \[0.01, 1.0, 1.0\] mm, outside the 0.1-20.0 mm"),
    (np.diag([1.0, 1.0, 50.0, 1.0]), r"voxel spacing \[1.0, 1.0, 50.0\] mm"),
    (np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]), "singular voxel-to-world matrix"),
    (np.diag([1.0, np.nan, 1.0, 1.0]), "non-finite voxel-to-world matrix"),
])
def test_implausible_geometry_is_refused(tmp_path, affine, message):
    path = tmp_path / "ct.nii.gz"
    image = nib.Nifti1Image(np.zeros((24, 24, 24), np.int16), None)
    image.header.set_sform(affine, code=1)  # written as stored, as a broken exporter would
    image.header.set_qform(None, code=0)
    nib.save(image, str(path))
    with pytest.raises(InputError, match=message) as caught:
        load_volume_or_raise(path)
    assert "ct.nii.gz" in caught.value.message and "export the volume again" in caught.value.hint


def test_nan_ct_is_an_input_error_not_an_empty_segmentation(tmp_path, tiny_bundle):
    path = _save(tmp_path / "nan.nii.gz", np.full((24, 24, 24), np.nan, np.float32))
    code, events = _segment_jsonl(tiny_bundle, path, tmp_path / "out" / "seg.nii.gz")
    assert code == ExitCode.INPUT_ERROR and "nan.nii.gz holds 13824 NaN or infinite voxels" in events[-1]["message"]
    assert not (tmp_path / "out" / "seg.nii.gz").exists()
    one_inf = np.zeros((24, 24, 24), np.float32)
    one_inf[3, 4, 5] = np.inf
    with pytest.raises(InputError, match="holds 1 NaN or infinite voxels") as caught:
        load_volume_or_raise(_save(tmp_path / "inf.nii.gz", one_inf))
    assert "-1024" in caught.value.hint


def test_ct_too_small_for_the_network_is_an_input_error(tmp_path, tiny_bundle):
    path = _save(tmp_path / "tiny.nii.gz", np.zeros((2, 2, 2), np.int16))
    code, events = _segment_jsonl(tiny_bundle, path, tmp_path / "out" / "seg.nii.gz")
    assert code == ExitCode.INPUT_ERROR and "tiny.nii.gz has shape (2, 2, 2): too small for the network" in events[-1]["message"]
    assert not (tmp_path / "out" / "seg.nii.gz").exists()


@pytest.mark.parametrize("values, warned", [
    (np.zeros((24, 24, 24), np.int16), True),  # blank
    (np.random.default_rng(0).integers(0, 60000, (24, 24, 24)).astype(np.int32), True),  # raw scanner values or another modality
    (np.random.default_rng(0).integers(-1000, 1500, (24, 24, 24)).astype(np.int16), False),  # air to bone
])
def test_values_that_do_not_look_like_hounsfield_units_are_a_warning(tmp_path, values, warned):
    events = io.StringIO()
    image = load_volume_or_raise(_save(tmp_path / "ct.nii.gz", values), sink=EventSink(ProgressMode.JSONL, stdout=events))
    assert image.shape == (24, 24, 24)
    warnings = [json.loads(line) for line in events.getvalue().splitlines()]
    assert len(warnings) == int(warned)
    if warned:
        assert warnings[0]["event"] == "warning" and "ct.nii.gz does not look like a CT in Hounsfield units" in warnings[0]["message"]
        assert "rescale slope/intercept" in warnings[0]["hint"] and warnings[0]["file"] == str(tmp_path / "ct.nii.gz")
