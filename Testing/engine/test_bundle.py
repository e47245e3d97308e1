"""Bundle format: validation, versions, rollback, atomic writes, and no code execution on load."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from ciss_test_helpers import record_checksums

from ciss_engine.api.bundle_record import STATUS_REJECTED
from ciss_engine.bundle import Bundle, load_version_or_raise, next_minor, semver_key, write_version
from ciss_engine.errors import BundleError


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def _current_dir(bundle: Path) -> Path:
    return bundle / "versions" / json.loads((bundle / "bundle.json").read_text())["current"]


def test_bundle_layout_metadata_and_model_card(tiny_bundle):
    version = Bundle.open_or_raise(tiny_bundle).load()
    assert version.version == "1.0.0"
    metadata = version.metadata
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "spleen", "2": "kidney_right", "3": "kidney_left", "4": "gallbladder"}
    assert metadata["ciss"]["network"]["out_channels"] == 5
    assert {"monai_version", "pytorch_version", "numpy_version", "changelog"} <= metadata.keys()
    assert version.history[0]["kind"] == "base" and len(version.history[0]["data_sha256"]) == 2
    card = (version.path / "docs" / "README.md").read_text()
    assert "| 4 | gallbladder |" in card and "SCT 28231008" in card
    prototypes = version.load_prototypes()
    assert prototypes and all(isinstance(v, torch.Tensor) for v in prototypes.values())


class _Payload:
    """Pickled, this would create a marker file when unpickled — if loading ever ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_in_weights_is_refused_and_never_runs(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    marker = tmp_path / "payload_ran"
    model = _current_dir(bundle) / "models" / "model.pt"
    torch.save({"weight": _Payload(marker)}, model)
    record_checksums(_current_dir(bundle))  # the checksum would refuse it first: check the defence behind it
    with pytest.raises(BundleError, match="contains objects other than tensors") as caught:
        Bundle.open_or_raise(bundle).load().load_state_dict()
    assert "malicious" in caught.value.hint
    assert not marker.exists()


def test_missing_weights_name_the_file(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (_current_dir(bundle) / "models" / "model.pt").unlink()
    with pytest.raises(BundleError, match="model weights are missing: .*model.pt"):
        Bundle.open_or_raise(bundle).load().load_state_dict()


def test_junk_weights_are_a_bundle_error(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (_current_dir(bundle) / "models" / "model.pt").write_bytes(b"junk")
    record_checksums(_current_dir(bundle))
    with pytest.raises(BundleError, match="cannot read model weights"):
        Bundle.open_or_raise(bundle).load().load_state_dict()


def test_wrong_schema_of_class_registry_is_reported(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (_current_dir(bundle) / "configs" / "classes.json").write_text(json.dumps({"classes": [{"name": "spleen"}]}))
    with pytest.raises(BundleError, match="classes.json has a wrong schema"):
        Bundle.open_or_raise(bundle).load()


def test_damaged_json_and_foreign_bundle(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    metadata = _current_dir(bundle) / "configs" / "metadata.json"
    metadata.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON: .*metadata.json"):
        Bundle.open_or_raise(bundle).load()
    metadata.write_text(json.dumps({"version": "0.1.0", "network_data_format": {}}))
    with pytest.raises(BundleError, match="not a CISSegmentation bundle") as caught:
        Bundle.open_or_raise(bundle).load()
    assert "another tool" in caught.value.hint
    with pytest.raises(BundleError, match="bundle not found"):
        Bundle.open_or_raise(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="bundle pointer is missing"):
        Bundle.open_or_raise(tmp_path / "empty")


def _write_next(bundle: Path, *, status: str = "published", make_current: bool = True, version: str = "1.1.0"):
    base = Bundle.open_or_raise(bundle).load()
    return write_version(
        bundle, version=version, registry=base.registry, settings={**base.settings.to_json(), "status": status, "parent_version": base.version},
        state_dict=base.load_state_dict(), prototypes=base.load_prototypes(), history=base.history + [{"version": version, "step": 2, "kind": "test"}],
        changelog={**base.metadata["changelog"], version: "test"}, make_current=make_current,
    )


def test_versions_rollback_and_rejected_versions(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    _write_next(bundle)
    handle = Bundle.open_or_raise(bundle)
    assert handle.versions() == ["1.0.0", "1.1.0"] and handle.current_version == "1.1.0"
    handle.set_current("1.0.0")
    assert handle.current_version == "1.0.0" and handle.next_version() == "1.2.0"
    _write_next(bundle, status=STATUS_REJECTED, make_current=False, version="1.2.0")
    assert handle.current_version == "1.0.0"
    with pytest.raises(BundleError, match="rejected by the forgetting guard"):
        handle.set_current("1.2.0")
    with pytest.raises(BundleError, match="version 9.9.9 does not exist"):
        handle.load("9.9.9")


def test_versions_order_as_numbers_and_the_next_is_the_next_minor():
    assert sorted(["1.10.0", "1.9.0", "1.0.0", "2.0.0"], key=semver_key) == ["1.0.0", "1.9.0", "1.10.0", "2.0.0"]
    assert next_minor("1.9.3") == "1.10.0"
    for bad in ("1.2", "1.2.0rc1", "v1.2.0"):  # packaging would read these; a bundle's folders never use them
        with pytest.raises(BundleError, match="invalid version"):
            semver_key(bad)


def test_a_failed_write_leaves_no_partial_version(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    base = Bundle.open_or_raise(bundle).load()
    broken_state = {"weight": "not a tensor"}
    with pytest.raises(AttributeError):
        write_version(
            bundle, version="1.1.0", registry=base.registry, settings=base.settings.to_json(), state_dict=broken_state, prototypes={},
            history=[], changelog={}, make_current=True,
        )
    assert Bundle.open_or_raise(bundle).versions() == ["1.0.0"]
    assert not [p for p in (bundle / "versions").iterdir() if p.name.startswith(".staging")]
    assert Bundle.open_or_raise(bundle).current_version == "1.0.0"


def test_existing_version_is_never_overwritten(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    with pytest.raises(BundleError, match="version 1.0.0 of bundle .* already exists") as caught:
        _write_next(bundle, version="1.0.0")
    assert "nothing was overwritten" in caught.value.hint and "output directory" not in caught.value.hint
    assert load_version_or_raise(bundle / "versions" / "1.0.0").version == "1.0.0"
