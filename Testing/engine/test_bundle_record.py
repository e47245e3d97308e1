"""The typed bundle read model: every field of a history entry survives, and a lineage it cannot read is refused."""
import json
import shutil

import pytest

from ciss_engine.api.bundle_record import BundleDescription, BundleSettings, StepRecord
from ciss_engine.bundle import Bundle, describe_bundle
from ciss_engine.errors import BundleError


def test_a_step_keeps_what_only_its_kind_records():
    entry = {"version": "1.1.0", "kind": "incremental", "organs": ["liver"], "parent_version": "1.0.0", "created": "2026-12-03T10:00:00+00:00",
             "step": 2, "losses": {"ce": 0.4}, "forgetting_guard": {"passed": True}}
    record = StepRecord.from_json(entry)
    assert (record.version, record.kind, record.organs, record.parent_version) == ("1.1.0", "incremental", ("liver",), "1.0.0")
    assert record.details == {"step": 2, "losses": {"ce": 0.4}, "forgetting_guard": {"passed": True}}
    assert record.to_json() == entry


def test_the_description_reads_back_from_its_json(tiny_bundle):
    description = describe_bundle(tiny_bundle)
    assert BundleDescription.from_json(json.loads(json.dumps(description.to_json()))) == description
    assert description.history[0].kind == "base" and description.history[0].organs == ("spleen", "kidney_right", "kidney_left", "gallbladder")
    assert [(v.version, v.status) for v in description.versions] == [("1.0.0", "current")]


@pytest.mark.parametrize("damage", [{"kind": None}, {"version": 1}, {"organs": "liver"}], ids=["no kind", "numeric version", "organs not a list"])
def test_a_lineage_the_readers_cannot_read_is_a_damaged_bundle(tiny_bundle, tmp_path, damage):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    history = Bundle.open_or_raise(copy).load().path / "docs" / "history.json"
    entries = json.loads(history.read_text())
    entries[0] = {key: value for key, value in {**entries[0], **damage}.items() if value is not None}
    history.write_text(json.dumps(entries))
    with pytest.raises(BundleError, match="history.json is damaged"):
        describe_bundle(copy)


def test_a_versions_settings_read_typed_and_write_back_as_they_were(tiny_bundle):
    version = Bundle.open_or_raise(tiny_bundle).load()
    section = version.metadata["ciss"]
    settings = version.settings
    assert isinstance(settings, BundleSettings) and settings.to_json() == section
    assert (settings.status, settings.step, settings.parent_version) == ("published", 1, None)
    assert settings.network["out_channels"] == 5 and settings.training["iterations"] == section["training"]["iterations"]
    assert settings.details["format_version"] == 1 and settings.strategy is None
    # A step's record names its strategy and guard; an older record without a status is a published version.
    step = {**section, "strategy": {"name": "uniform"}, "forgetting_guard": {"passed": True}, "parent_version": "1.0.0"}
    assert BundleSettings.from_json(step).to_json() == step and BundleSettings.from_json(step).strategy == {"name": "uniform"}
    older = {key: value for key, value in section.items() if key != "status"}
    assert BundleSettings.from_json(older).status == "published"
