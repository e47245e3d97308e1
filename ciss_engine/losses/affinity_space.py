"""The feature space in which ORCD and CRCD measure how much a voxel looks like each class (METHOD.md §3).

Post-activation features are non-negative, so their cosines lie in [0, 1] and organ prototypes are nearly
collinear there (measured organ–organ cosines 0.76–0.999): no temperature makes the affinity softmax tell
organs apart. The pre-activation features are signed; centring the post-activation space on the
prototypes' mean is the other way to spread them.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch

from ..api.settings import AffinityFeatures

AFFINITY_FEATURES = get_args(AffinityFeatures)


def prototype_space(affinity_features: AffinityFeatures) -> Literal["pre", "post"]:
    """Which stored prototypes a space needs: the centred space is built from the post-activation ones."""
    return "pre" if affinity_features == "pre_activation" else "post"


def to_affinity_space(
    features: torch.Tensor, prototypes: torch.Tensor, affinity_features: AffinityFeatures
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (B, K, ...) and prototypes (C, K) as the affinity softmax should compare them.

    ``features`` are the network's pre-activation tap; ``prototypes`` are in the space
    :func:`prototype_space` names. ``centred`` subtracts the mean of these prototypes from both.
    """
    if affinity_features not in AFFINITY_FEATURES:
        raise ValueError(f"affinity_features must be one of {', '.join(AFFINITY_FEATURES)}, got {affinity_features!r}")
    if affinity_features == "pre_activation":
        return features, prototypes
    post = torch.relu(features)
    if affinity_features == "post_activation":
        return post, prototypes
    centre = prototypes.mean(0)
    return post - centre.view(1, -1, *([1] * (features.dim() - 2))), prototypes - centre
