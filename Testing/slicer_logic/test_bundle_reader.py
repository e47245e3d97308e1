"""The new organs of a Learn step as the panel lists them (``bundle_reader.new_organ_or_raise``)."""
from __future__ import annotations

import pytest
from slicer_logic_helpers import bundle_info

from CISSegmentationLib.bundle_reader import new_organ_or_raise
from CISSegmentationLib.errors import InputError

BASE = ["spleen", "kidney_right", "kidney_left"]  # labels 1, 2, 3


def test_organs_added_in_one_step_get_consecutive_labels_after_the_bundles_last(tmp_path):
    bundle = bundle_info(tmp_path, BASE)
    liver = new_organ_or_raise(bundle, "liver", None)
    stomach = new_organ_or_raise(bundle, "stomach", None, pending=[liver])
    tumour_bed = new_organ_or_raise(bundle, "tumour_bed", (255, 128, 0), pending=[liver, stomach])
    assert [(o.name, o.label) for o in (liver, stomach, tumour_bed)] == [("liver", 4), ("stomach", 5), ("tumour_bed", 6)]
    assert tumour_bed.type.scheme != "SCT" and liver.type.code == "10200004"  # custom code; SNOMED CT Liver from the catalog


def test_adding_a_pending_organ_again_keeps_its_label(tmp_path):
    bundle = bundle_info(tmp_path, BASE)
    liver = new_organ_or_raise(bundle, "liver", None)
    stomach = new_organ_or_raise(bundle, "stomach", None, pending=[liver])
    again = new_organ_or_raise(bundle, "liver", (10, 20, 30), pending=[stomach, liver])  # another colour, same organ
    assert (again.label, again.rgb) == (4, (10, 20, 30))


def test_an_organ_the_bundle_segments_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"already segments 'kidney_left' \(label 3\)") as caught:
        new_organ_or_raise(bundle_info(tmp_path, BASE), "kidney_left", None)
    assert "does not segment yet" in caught.value.hint
