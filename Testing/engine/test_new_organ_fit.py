"""new_organ_fit.py: a step's new organs scored against the user's labels on the step's CTs, as `ciss segment` shows
them, with the voxels painted far from the organ's label counted apart from its boundary (DSC rounded to four
decimals, as the guard's)."""
from __future__ import annotations

import json

import pytest
import torch
from ciss_test_helpers import logging_sink

from ciss_engine.events import EventSink, ProgressMode
from ciss_engine.new_organ_fit import FAR_MM, OrganFit, new_organ_fit, report_fit

PANCREAS, LIVER = 5, 6
ORGANS = [(PANCREAS, "pancreas"), (LIVER, "liver")]


def _label() -> torch.Tensor:
    """A 4 × 4 × 4 pancreas at one end of a 40-voxel-long grid, a liver block elsewhere."""
    label = torch.zeros((40, 8, 8), dtype=torch.uint8)
    label[0:4, 2:6, 2:6] = PANCREAS
    label[20:24, 2:6, 2:6] = LIVER
    return label


def test_a_piece_beyond_the_far_distance_is_counted_and_one_within_it_is_not():
    """The pancreas painted right, plus a 2 × 2 × 2 piece 12 voxels (36 mm at 3 mm) past its label: 8 far voxels; at
    2 mm spacing the same piece lies 24 mm away and is a near miss."""
    label = _label()
    prediction = label.clone()
    prediction[15:17, 0:2, 0:2] = PANCREAS  # 12 voxels beyond the pancreas's last slice (3)
    fit = new_organ_fit([label], [prediction], ORGANS, spacing_mm=(3.0, 3.0, 3.0), one_piece=[])
    pancreas = pytest.approx(2 * 64 / (64 + 72), abs=1e-4)
    assert fit["pancreas"] == OrganFit(dsc=pancreas, case_dsc=(pancreas,), painted_voxels=72, far_voxels=8)
    assert fit["liver"] == OrganFit(dsc=pytest.approx(1.0), case_dsc=(pytest.approx(1.0),), painted_voxels=64, far_voxels=0)
    assert 12 * 3.0 > FAR_MM > 12 * 2.0
    assert new_organ_fit([label], [prediction], ORGANS, spacing_mm=(2.0, 3.0, 3.0), one_piece=[])["pancreas"].far_voxels == 0


def test_scored_as_segment_shows_it_the_small_far_piece_of_a_one_piece_organ_is_dropped():
    label = _label()
    prediction = label.clone()
    prediction[15:17, 0:2, 0:2] = PANCREAS
    fit = new_organ_fit([label], [prediction], ORGANS, spacing_mm=(3.0, 3.0, 3.0), one_piece=[PANCREAS])
    assert fit["pancreas"] == OrganFit(dsc=pytest.approx(1.0), case_dsc=(pytest.approx(1.0),), painted_voxels=64, far_voxels=0)


def test_an_organ_painted_on_a_ct_where_it_is_not_labelled_is_far_there_and_scores_against_the_other_cts():
    """Labels are complete: on a CT without a pancreas label, every voxel painted pancreas is a false piece."""
    with_pancreas, without = _label(), _label()
    without[without == PANCREAS] = 0
    prediction = _label()  # paints the pancreas on both CTs
    fit = new_organ_fit([with_pancreas, without], [prediction, prediction], ORGANS, spacing_mm=(3.0, 3.0, 3.0), one_piece=[])
    assert fit["pancreas"] == OrganFit(dsc=pytest.approx(2 * 64 / (64 + 128), abs=1e-4), case_dsc=(pytest.approx(1.0), None), painted_voxels=128,
                                       far_voxels=64)
    nowhere = new_organ_fit([without], [prediction], ORGANS, spacing_mm=(3.0, 3.0, 3.0), one_piece=[])["pancreas"]
    assert nowhere.dsc is None and nowhere.far_voxels == 64


def test_labels_and_predictions_are_not_interchangeable():
    """The far count reads distances from the labels: swapped, the piece the prediction added would be the reference."""
    label = _label()
    prediction = label.clone()
    prediction[15:17, 0:2, 0:2] = PANCREAS
    swapped = new_organ_fit([prediction], [label], ORGANS, spacing_mm=(3.0, 3.0, 3.0), one_piece=[])
    assert swapped["pancreas"].far_voxels == 0 and swapped["pancreas"].painted_voxels == 64


@pytest.mark.parametrize(("fit", "problems"), [
    (OrganFit(dsc=0.49, case_dsc=(0.49,), painted_voxels=100, far_voxels=0), ["poorly (DSC under 0.5) on a.nii (0.49)"]),
    (OrganFit(dsc=0.63, case_dsc=(0.42, 0.67), painted_voxels=100, far_voxels=0), ["poorly (DSC under 0.5) on a.nii (0.42)"]),
    (OrganFit(dsc=0.8, case_dsc=(0.8, None), painted_voxels=100, far_voxels=11), ["30 mm"]),
    (OrganFit(dsc=0.3, case_dsc=(0.3, 0.2), painted_voxels=100, far_voxels=50), ["a.nii (0.30), b.nii (0.20)", "30 mm"]),
    (OrganFit(dsc=0.8, case_dsc=(0.8, 0.8), painted_voxels=100, far_voxels=10), []),
    (OrganFit(dsc=None, case_dsc=(None, None), painted_voxels=0, far_voxels=0), []),
])
def test_an_organ_is_flagged_below_half_dsc_on_any_ct_or_with_a_tenth_of_it_painted_far_away(fit, problems):
    """Pooled, the second case's 0.63 would hide the first CT's 0.42."""
    found = fit.problems(["a.nii", "b.nii"])
    assert len(found) == len(problems) and all(words in text for words, text in zip(problems, found))


def test_the_report_logs_every_new_organ_and_warns_with_advice_for_the_one_with_problems(tmp_path):
    fit = {"pancreas": OrganFit(dsc=0.35, case_dsc=(0.35, None), painted_voxels=2723, far_voxels=2100),
           "liver": OrganFit(dsc=0.94, case_dsc=(0.95, 0.93), painted_voxels=9000, far_voxels=0)}
    sink = logging_sink()
    report_fit(fit, sink, ct_names=["abdomen.nii.gz", "chest.nii.gz"], short_step=True)
    text = "\n".join(sink.lines)
    assert "pancreas DSC 0.35 (0.35 / – by CT; 2723 voxels painted, 2100 more than 30 mm from its label)" in text and "liver DSC 0.94" in text
    assert "warning: pancreas on the step's own CTs: it matches its label poorly (DSC under 0.5) on abdomen.nii.gz (0.35)" in text
    assert "painted more than 30 mm" in text and "`thorough` step" in text and "warning: liver" not in text
    events = tmp_path / "events.jsonl"
    with events.open("w") as stream:
        report_fit(fit, EventSink(ProgressMode.JSONL, stdout=stream), ct_names=["abdomen.nii.gz", "chest.nii.gz"], short_step=False)
    warnings = [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "warning"]
    assert len(warnings) == 1 and "pancreas" in warnings[0]["message"] and "more labelled CTs" in warnings[0]["hint"]
