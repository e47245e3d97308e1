"""The patient's body on a prepared CT, where a step's background patches are centred.

Background centres drawn anywhere in the CT fall in the air around the patient for a third to a half of the draws on
the two real CTs (38 % of ts_abdpelvis's background voxels on the network grid, 58 % of chest_4x's): such a patch teaches a
new organ's output channels nothing about the tissue where no organ lies, which they may then claim (RESULTS.md (at):
a false esophagus in the fat of the upper chest; (au): centred in the body instead). The body is every voxel brighter than the CT's darkest
intensity (air in any CT normalisation; on the engine's window everything at or below −175 HU) together with what
those voxels enclose in each axial slice, so the lungs and the bowel gas count as body.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


# How far above the darkest intensity a voxel must be to count as brighter, in the model's units (0.4 HU on the engine's
# window): above float rounding of the air's value.
DARKEST_MARGIN = 1e-3


def body_mask(image: torch.Tensor) -> torch.Tensor:
    """Bool (X, Y, Z) of the body on a (1, X, Y, Z) or (X, Y, Z) image on the network grid (RAS: Z is axial)."""
    values = np.asarray(image.detach().cpu().float()).reshape(image.shape[-3:])
    brighter = values > values.min() + DARKEST_MARGIN
    filled = np.stack([ndimage.binary_fill_holes(brighter[:, :, z]) for z in range(values.shape[2])], axis=2)
    return torch.from_numpy(filled)
