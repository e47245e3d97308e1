"""The demo's scores: each version scored in its own label ids against the paper's reference ids."""
import numpy as np
import pytest

from ciss_engine.demo_data import NEW_ORGANS
from ciss_engine.demo_report import case_scores
from ciss_engine.registry import ClassRegistry

BASE = ClassRegistry.from_names([("spleen", None), ("kidney_right", None), ("kidney_left", None), ("gallbladder", None)])
GROWN = BASE.with_new_organs([("liver", None), ("stomach", None)], step=2, version="1.1.0")


def _reference() -> np.ndarray:
    """Spleen (1) and kidney_right (2) in the paper's ids, liver 7, stomach 8; no kidney_left or gallbladder."""
    reference = np.zeros((20, 10, 10), dtype=np.uint8)
    reference[0:4], reference[4:8], reference[8:14], reference[14:18] = 1, 2, 7, 8
    return reference


def test_new_organs_are_scored_under_the_grown_registry_labels_and_old_organs_keep_their_ratio():
    reference = _reference()
    before = np.where(reference <= 2, reference, 0)  # the base finds both old organs exactly
    after = np.zeros_like(reference)
    after[0:2] = 1  # half the spleen
    after[4:8] = 2
    after[8:14] = GROWN.by_name("liver").label  # 5 in the grown registry, 7 in the reference
    after[14:16] = GROWN.by_name("stomach").label  # half the stomach
    scores = case_scores({"before": before, "after": after}, reference, {"before": BASE, "after": GROWN}, (1.0, 1.0, 1.0), NEW_ORGANS)
    assert set(scores["before"]) == {"spleen", "kidney_right"}  # absent organs are not scored
    assert scores["after"]["liver"]["dsc"] == pytest.approx(1.0)
    assert scores["after"]["stomach"]["dsc"] == pytest.approx(2 * 2 / (2 + 4))
    assert scores["retention"] == {"spleen": pytest.approx(2 / 3), "kidney_right": pytest.approx(1.0)}
    assert scores["old_organs_kept"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_retention_is_not_reported_where_the_base_model_found_nothing():
    reference = _reference()
    nothing = np.zeros_like(reference)
    scores = case_scores({"before": nothing, "after": nothing}, reference, {"before": BASE, "after": GROWN}, (1.0, 1.0, 1.0), NEW_ORGANS)
    assert scores["retention"] == {"spleen": None, "kidney_right": None}
    assert scores["old_organs_kept"] is None
