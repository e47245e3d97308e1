"""A bundle that paints every organ by construction, for tests that need organ voxels in a result.

The session's tiny bundle trains for 4 iterations: it predicts almost no organ voxel, and which few it
predicts depends on the CPU's arithmetic. Tests of what is done with a result (confusion counts, exports,
the viewer's drawing) need a result that holds organs on every machine. This bundle keeps the tiny bundle's
network and rewrites its classifier: organ k is painted where one feature channel of its own exceeds that
channel's ``1 - share`` quantile over a given CT, a threshold measured on this machine's own features, so
every organ holds voxels whatever the arithmetic. Its organs are not anatomy; the tests do not need them to be.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import torch

from ciss_engine.bundle import Bundle, write_version
from ciss_engine.inference import Segmenter


def _features_over(segmenter: Segmenter, ct: Path) -> torch.Tensor:
    """The classifier's input over every sliding-window patch of ``ct``, as (voxels, channels)."""
    captured: list[torch.Tensor] = []
    handle = segmenter.network.classifier.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0].detach().float()))
    try:
        segmenter.segment(nib.load(str(ct)))
    finally:
        handle.remove()
    return torch.cat([f.movedim(1, -1).reshape(-1, f.shape[1]) for f in captured])


def paint_organs(source: Path, output: Path, ct: Path, share: float = 0.05) -> Path:
    """Write to ``output`` a copy of ``source``'s current version whose classifier paints each organ on about ``share`` of ``ct``."""
    version = Bundle.open_or_raise(source).load()
    segmenter = Segmenter(version, torch.device("cpu"))
    features = _features_over(segmenter, ct)
    # The channels that vary most, one per organ: each organ gets its own voxels.
    channels = features.std(0).argsort(descending=True)[: len(version.registry.organs)]
    state = version.load_state_dict()
    weight, bias = torch.zeros_like(state["classifier.weight"]), torch.zeros_like(state["classifier.bias"])
    for organ, channel in zip(version.registry.organs, channels.tolist()):
        weight[organ.label, channel] = 1.0
        bias[organ.label] = -torch.quantile(features[:, channel], 1.0 - share)
    state["classifier.weight"], state["classifier.bias"] = weight, bias
    settings = {k: v for k, v in version.settings.to_json().items() if k != "files_sha256"}
    write_version(output, version=version.version, registry=version.registry, settings=settings, state_dict=state,
                  prototypes=version.load_prototypes(), history=version.history, changelog=version.metadata["changelog"], make_current=True)
    painted = Segmenter(Bundle.open_or_raise(output).load(), torch.device("cpu")).segment(nib.load(str(ct))).volumes_ml
    assert all(volume > 0 for volume in painted.values()), f"the painting bundle paints no voxel of some organ on {ct}: {painted}"
    return output
