"""The typed bundle read model: every field of a history entry survives, and a lineage it cannot read is refused."""
import json
import shutil

import pytest

from ciss_engine.api.bundle_record import BundleDescription, StepRecord
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
