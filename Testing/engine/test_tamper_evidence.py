"""Tamper evidence: each version records the SHA-256 of its model files; loading names a file that changed,
older versions without checksums still load (and say so), and ``ciss verify`` reports every version."""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ciss_test_helpers import run_cli

from ciss_engine.bundle import Bundle, sha256_of, write_version
from ciss_engine.errors import BundleError, ExitCode

MODEL, PROTOTYPES = "models/model.pt", "models/prototypes.safetensors"


@pytest.fixture()
def bundle(tiny_bundle, tmp_path) -> Path:
    """The tiny bundle with a second version 1.1.0 (the same weights, written again)."""
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    base = Bundle.open_or_raise(copy).load()
    write_version(
        copy, version="1.1.0", registry=base.registry, settings={**base.settings.to_json(), "parent_version": "1.0.0"}, state_dict=base.load_state_dict(),
        prototypes=base.load_prototypes(), history=base.history, changelog=base.metadata["changelog"], make_current=True,
    )
    return copy


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _verify(bundle: Path) -> tuple[int, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "ciss_engine", "verify", "-b", str(bundle), "--progress", "jsonl"], capture_output=True, text=True, timeout=60)
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def test_metadata_records_the_checksums_of_the_model_files(bundle):
    version = Bundle.open_or_raise(bundle).load()
    assert version.recorded_sha256 == {MODEL: sha256_of(version.model_path), PROTOTYPES: sha256_of(version.prototypes_path)}
    assert version.check_files() == {MODEL: "ok", PROTOTYPES: "ok"}


@pytest.mark.parametrize("name", [MODEL, PROTOTYPES])
def test_a_changed_model_file_is_named_on_load(bundle, name):
    version = Bundle.open_or_raise(bundle).load("1.0.0")
    _flip_last_byte(version.path / name)
    with pytest.raises(BundleError, match=f"{version.path / name} has changed since version 1.0.0 was written") as caught:
        version.load_state_dict() if name == MODEL else version.load_prototypes()
    assert "restore the bundle from a backup" in caught.value.hint and "roll back" in caught.value.hint
    assert Bundle.open_or_raise(bundle).load("1.1.0").load_state_dict(), "the other version is untouched and loads"


def test_segment_refuses_a_changed_model_with_exit_4(bundle, phantom_cohort, tmp_path, capsys):
    _flip_last_byte(bundle / "versions" / "1.1.0" / MODEL)
    code = run_cli("segment", "-b", bundle, "-i", phantom_cohort[0] / "image.nii.gz", "-o", tmp_path / "seg.nii.gz", "--no-preview", "--quiet")
    assert code == ExitCode.BUNDLE_ERROR and "model.pt has changed since version 1.1.0 was written" in capsys.readouterr().err


def test_missing_prototypes_are_named(bundle):
    version = Bundle.open_or_raise(bundle).load()
    version.prototypes_path.unlink()
    with pytest.raises(BundleError, match="prototypes are missing: .*prototypes.safetensors"):
        version.load_prototypes()


def test_a_version_written_before_checksums_still_loads_and_says_so(bundle, caplog):
    metadata_path = bundle / "versions" / "1.0.0" / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["ciss"]["files_sha256"]
    metadata_path.write_text(json.dumps(metadata))
    version = Bundle.open_or_raise(bundle).load("1.0.0")
    with caplog.at_level(logging.WARNING, logger="ciss_engine.bundle"):
        assert version.load_state_dict() and version.load_prototypes()
    assert [r.getMessage() for r in caplog.records] == [f"{version.path} was written before bundles recorded checksums: its model files are loaded without a tamper check"]
    code, events = _verify(bundle)
    assert code == 0 and [(v["version"], v["status"]) for v in events[-1]["versions"]] == [("1.0.0", "unverified"), ("1.1.0", "ok")]


def test_verify_reports_every_version_and_fails_unless_all_are_intact(bundle):
    code, events = _verify(bundle)
    assert code == 0 and events[-1]["event"] == "done" and events[-1]["intact"] is True
    assert [(v["version"], v["status"]) for v in events[-1]["versions"]] == [("1.0.0", "ok"), ("1.1.0", "ok")]

    _flip_last_byte(bundle / "versions" / "1.0.0" / MODEL)
    (bundle / "versions" / "1.1.0" / PROTOTYPES).unlink()
    code, events = _verify(bundle)
    assert code == ExitCode.BUNDLE_ERROR
    done, error = events[-2], events[-1]
    assert done["event"] == "done" and done["intact"] is False
    assert {v["version"]: (v["status"], v["files"]) for v in done["versions"]} == {
        "1.0.0": ("changed", {MODEL: "changed", PROTOTYPES: "ok"}),
        "1.1.0": ("missing", {MODEL: "ok", PROTOTYPES: "missing"}),
    }
    assert error["event"] == "error" and "2 of 2 versions" in error["message"] and "1.0.0 changed (models/model.pt changed)" in error["message"]

    (bundle / "versions" / "1.1.0" / "configs" / "metadata.json").write_text("{damaged")
    _, events = _verify(bundle)
    assert events[-2]["versions"][1]["status"] == "damaged" and "not valid JSON" in events[-2]["versions"][1]["message"]


def test_verify_answers_without_torch(bundle):
    code = f"import sys\nfrom ciss_engine.cli import main\nmain(['verify', '-b', {str(bundle)!r}, '--quiet'])\nprint('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip() == "False"
