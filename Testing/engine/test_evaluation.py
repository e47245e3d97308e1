import numpy as np
import pytest

from ciss_engine.evaluation import markdown_table, score_case, summarise


def test_dsc_and_hd95_on_hand_made_masks():
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[5:10, 5:10, 5:10] = 1  # 125 voxels
    prediction = np.zeros_like(reference)
    prediction[5:10, 5:10, 6:11] = 1  # shifted by one voxel along z: overlap 100
    reference[15:17, 15:17, 15:17] = 2  # organ 2 present but never predicted
    scores = score_case(prediction, reference, [(1, "spleen"), (2, "liver"), (3, "stomach")], spacing=(1.0, 1.0, 2.0))
    assert scores["spleen"]["dsc"] == pytest.approx(2 * 100 / 250)
    assert scores["spleen"]["hd95_mm"] == pytest.approx(2.0)  # one voxel of 2 mm along z
    assert scores["liver"] == {"dsc": 0.0, "hd95_mm": None}
    assert "stomach" not in scores  # absent from the reference: skipped, as in the paper's protocol


def test_summary_averages_only_cases_where_organ_is_present():
    cases = {"a": {"spleen": {"dsc": 0.8, "hd95_mm": 2.0}}, "b": {"spleen": {"dsc": 0.6, "hd95_mm": None}, "liver": {"dsc": 0.9, "hd95_mm": 4.0}}}
    summary = summarise(cases)
    assert summary["per_organ"]["spleen"] == {"dsc": pytest.approx(0.7), "hd95_mm": 2.0, "cases": 2}
    assert summary["mean_dsc"] == pytest.approx((0.7 + 0.9) / 2)
    table = markdown_table(cases, summary)
    assert "| a | 0.800 / 2.0 | – |" in table
