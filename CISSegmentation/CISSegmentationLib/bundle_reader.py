"""What the panel shows about a bundle: organs, versions with their status, history (no torch).

This is the only file of the Slicer side that reads a bundle, and it reads it through the engine's
own torch-free reader (``ciss info --json`` in-process), so the format has one definition.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from ciss_engine.api.bundle_record import StepRecord, VersionSummary
from ciss_engine.registry import ClassRegistry, OrganClass, known_organ_names, make_organ

from .errors import BundleError, InputError

PENDING_VERSION = "not learned yet"  # a new organ's version_introduced until the engine's step names it

__all__ = ["BundleInfo", "catalog_rgb", "known_organ_names", "new_organ_or_raise", "read_bundle_or_raise"]


@dataclasses.dataclass(frozen=True)
class BundleInfo:
    """A bundle as the panel lists it; ``registry`` and ``history`` are those of ``version``."""

    path: Path
    current: str
    version: str
    versions: tuple[VersionSummary, ...]
    registry: ClassRegistry
    history: tuple[StepRecord, ...]

    @property
    def organs(self) -> tuple[OrganClass, ...]:
        return self.registry.organs

    def version_info(self, version: str) -> VersionSummary:
        for info in self.versions:
            if info.version == version:
                return info
        raise BundleError(f"version {version} is not in {self.path}", f"available versions: {', '.join(v.version for v in self.versions)}")


def read_bundle_or_raise(path: Path | str | None, version: str | None = None) -> BundleInfo:
    """Read the bundle folder ``path`` (``version``: default the current one)."""
    from ciss_engine.bundle import describe_bundle

    if not path or not str(path).strip():
        raise BundleError("no bundle chosen", "choose the bundle folder (it holds bundle.json and versions/) under Bundle")
    description = describe_bundle(Path(path), version)
    return BundleInfo(
        path=Path(path), current=description.current, version=description.version, versions=description.versions,
        registry=ClassRegistry.from_json({"classes": list(description.classes)}), history=description.history,
    )


def catalog_rgb(name: str) -> tuple[int, int, int] | None:
    """The catalog colour of a known organ, None for a custom one."""
    return make_organ(name, 1).rgb if name in known_organ_names() else None


def new_organ_or_raise(bundle: BundleInfo, name: str, rgb: tuple[int, int, int] | None, pending: Sequence[OrganClass] = ()) -> OrganClass:
    """The organ a Learn step would add: catalog codes or a custom code, and its label id.

    ``pending`` are the organs already added to this step (sent to the engine in label order). The label
    comes from the engine's own numbering (``ClassRegistry.with_new_organs``), so painted label values are
    the ones ``ciss learn`` expects; adding a pending organ again (another colour, another CT to paint)
    keeps its label.
    """
    if name in bundle.registry:
        raise InputError(
            f"the bundle already segments {name!r} (label {bundle.registry.by_name(name).label})",
            "choose an organ the bundle does not segment yet, or correct the existing one by segmenting again",
        )
    ordered = sorted(pending, key=lambda organ: organ.label)
    specs = [(organ.name, rgb if organ.name == name else organ.rgb) for organ in ordered]
    if name not in {organ.name for organ in ordered}:
        specs.append((name, rgb))
    step = max((organ.step for organ in bundle.organs), default=0) + 1
    return bundle.registry.with_new_organs(specs, step=step, version=PENDING_VERSION).by_name(name)
