"""The forgetting guard: does the new version still find the old organs where the parent did?

No labels are needed: on the step's own CTs, the parent's mask of each old organ is compared with
the new version's (agreement DSC pooled over the CTs). A drop below the threshold keeps the new
version from becoming current unless the user accepts it knowingly.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch


@dataclasses.dataclass(frozen=True)
class GuardResult:
    threshold: float
    agreement: dict[str, float | None]  # None: the parent found the organ on none of the CTs

    @property
    def passed(self) -> bool:
        return all(value is None or value >= self.threshold for value in self.agreement.values())

    @property
    def failing_organs(self) -> list[str]:
        return [name for name, value in self.agreement.items() if value is not None and value < self.threshold]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "threshold": self.threshold, "agreement": self.agreement, "failing_organs": self.failing_organs}


def check_forgetting(old_predictions: Sequence[torch.Tensor], new_predictions: Sequence[torch.Tensor], old_organs: Sequence[tuple[int, str]], *, threshold: float) -> GuardResult:
    """Agreement DSC per old organ between the parent's and the new model's masks."""
    agreement: dict[str, float | None] = {}
    for label, name in old_organs:
        intersection = total = 0
        for old, new in zip(old_predictions, new_predictions):
            old_mask, new_mask = old == label, new == label
            intersection += int((old_mask & new_mask).sum())
            total += int(old_mask.sum()) + int(new_mask.sum())
        found_by_parent = any(bool((old == label).any()) for old in old_predictions)
        agreement[name] = round(2.0 * intersection / total, 4) if found_by_parent else None
    return GuardResult(threshold=threshold, agreement=agreement)
