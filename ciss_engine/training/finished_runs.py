"""``--resume`` of a run that had already published its version when it was stopped (killed after the
switch of ``bundle.json``, before it removed its checkpoints).

Every version records the fingerprint of the run that wrote it (``training.run_fingerprint``, run_record.py). A
resumed run whose fingerprint is recorded there is finished: it reports that version, as the
uninterrupted run did, instead of training again or failing because its organs are already in the bundle.
"""
from __future__ import annotations

from collections.abc import Callable

from ..bundle import Bundle, BundleVersion
from ..errors import BundleError
from .run_record import RUN_FINGERPRINT


def recorded_run(version: BundleVersion) -> str | None:
    """The fingerprint of the run that wrote ``version`` (None for versions written before it was recorded)."""
    return version.settings.training.get(RUN_FINGERPRINT)


def version_written_by(bundle: Bundle, fingerprint_from: Callable[[str | None], str]) -> BundleVersion | None:
    """The version this very run wrote, if any. ``fingerprint_from(parent_version)`` is the run's
    fingerprint had it started from that parent (a step's fingerprint covers its parent)."""
    for name in reversed(bundle.versions()):
        try:
            version = bundle.load(name)
        except BundleError:  # a damaged version was not written by a run that finished
            continue
        recorded = recorded_run(version)
        if recorded is not None and recorded == fingerprint_from(version.settings.parent_version):
            return version
    return None
