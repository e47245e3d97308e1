import torch

from ciss_engine.forgetting_guard import check_forgetting


def test_agreement_is_pooled_dsc_per_old_organ():
    old = [torch.tensor([1, 1, 1, 1, 2, 0]), torch.tensor([1, 1, 0, 0, 0, 0])]
    new = [torch.tensor([1, 1, 1, 0, 0, 0]), torch.tensor([1, 1, 0, 0, 0, 3])]
    result = check_forgetting(old, new, [(1, "spleen"), (2, "liver"), (4, "gallbladder")], threshold=0.9)
    # spleen: intersection 3 + 2 = 5, sizes (4 + 2) + (3 + 2) = 11 → 10/11
    assert result.agreement["spleen"] == round(10 / 11, 4)
    assert result.agreement["liver"] == 0.0  # found by the parent, lost by the new model
    assert result.agreement["gallbladder"] is None  # never found by the parent: nothing to forget
    assert not result.passed and result.failing_organs == ["liver"]
    assert check_forgetting(old, old, [(1, "spleen"), (2, "liver")], threshold=0.9).passed
