"""Synthetic patients beside a site's CTs in base training: the variety of anatomy one or two patients lack.

A base model trained on one patient learns that patient: its organs' sizes, places and neighbours. On another
patient it found nothing, whatever the augmentation (RESULTS.md (i), (aa), (am): a chest CT's model scored 0.00 on
an abdomen CT's spleen and kidneys in every run). The phantom (phantom.py) draws a new patient for every seed, organ
by organ, so a share of the patches from a few phantom patients shows the model organs that differ from case to
case, while the site's CTs keep showing what real tissue looks like (RESULTS.md (ao)). They come in turn as the
phantom's three scanner sites show them (scanner_sites.py: non-contrast, portal-venous, arterial with thick slices),
so the organs' shapes and places are seen in more than one contrast phase; their patches can get organ contrast of
their own (sampler.py, base.BaseTrainingRequest.synthetic_organ_contrast; by default the site's share).
The phantom draws eight organs (phantom_anatomy.ORGAN_NAMES). A run that learns any other organ gets no synthetic
patients: the phantom would label that organ background wherever it drew something like it.
The phantom is drawn directly on the network grid (it is analytic), so no resampling and little time are spent.
"""
from __future__ import annotations

import math

import nibabel as nib
import numpy as np

from ..events import EventSink
from ..phantom import DEFAULT_SHAPE, DEFAULT_SPACING, case_seed, generate_case
from ..phantom_anatomy import ORGAN_NAMES
from ..preprocessing import PreprocessingConfig, image_to_network, label_to_network
from ..registry import ClassRegistry
from ..scanner_sites import SITES
from .cases import PreparedCase, remap_label

SYNTHETIC_NAME_PREFIX = "synthetic_"


def synthetic_organs_missing(registry: ClassRegistry) -> list[str]:
    """The run's organs the phantom does not draw: any of them turns synthetic patients off."""
    return [name for name in registry.names if name not in ORGAN_NAMES]


def synthetic_cases(registry: ClassRegistry, share: float, *, count: int, seed: int, config: PreprocessingConfig, sink: EventSink) -> list[PreparedCase]:
    """``count`` phantom patients labelled with the run's class ids (the phantom's other organs as
    background), on the network grid; none when ``share`` is 0 or the phantom lacks one of the run's organs.
    The same ``seed`` gives the same patients."""
    if share <= 0.0:
        return []
    missing = synthetic_organs_missing(registry)
    if missing:
        sink.log(f"no synthetic patients: the phantom does not draw {', '.join(missing)}")
        return []
    value_to_class = {value: registry.by_name(name).label for value, name in enumerate(ORGAN_NAMES, start=1) if name in registry.names}
    field_of_view = np.asarray(DEFAULT_SHAPE) * np.asarray(DEFAULT_SPACING)
    spacing = tuple(float(s) for s in config.spacing_mm)
    shape = tuple(math.ceil(fov / s) for fov, s in zip(field_of_view, spacing))
    cases = []
    for index in range(count):
        sink.progress("synthetic", index, count)
        drawn = generate_case(case_seed(seed, index), shape=shape, spacing=spacing)
        shown = SITES[index % len(SITES)].apply(drawn.image, drawn.label, np.random.default_rng(drawn.seed))
        label = nib.Nifti1Image(drawn.label, drawn.affine)
        cases.append(PreparedCase(
            name=f"{SYNTHETIC_NAME_PREFIX}{index}", image=image_to_network(nib.Nifti1Image(shown, drawn.affine), config),
            label=label_to_network(label, remap_label(drawn.label, value_to_class), config), sha256=f"phantom:{drawn.seed}", synthetic=True,
        ))
    sink.progress("synthetic", count, count)
    return cases
