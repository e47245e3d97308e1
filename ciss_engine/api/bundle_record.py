"""A bundle as its readers see it (``ciss info --json``, ``ciss versions``, the Slicer panel, the studio): typed
records with ``to_json``/``from_json``, so a field renamed on one side fails on both instead of reading as missing.

``BundleDescription.from_json(description.to_json())`` gives the description back; a step keeps what only its
kind records (losses, the guard, strategy settings, a source) in ``details``, as written.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One entry of a version's lineage (``docs/history.json``): the step that made ``version``."""

    version: str
    kind: str  # base (trained from scratch), incremental (organs added), domain (a site adapted to), import
    organs: tuple[str, ...]  # the organs the step added (a domain step adds none)
    parent_version: str | None = None
    created: str | None = None  # ISO 8601, UTC
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # what this kind of step records besides

    _FIELDS = ("version", "kind", "organs", "parent_version", "created")

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> StepRecord:
        return cls(
            version=str(entry["version"]), kind=str(entry["kind"]), organs=tuple(entry.get("organs") or ()),
            parent_version=entry.get("parent_version"), created=entry.get("created"),
            details={key: value for key, value in entry.items() if key not in cls._FIELDS},
        )

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "kind": self.kind, "organs": list(self.organs), "parent_version": self.parent_version,
                "created": self.created, **self.details}


@dataclasses.dataclass(frozen=True)
class VersionSummary:
    """One version in a bundle's list; ``status``: current, accepted (a rejected step made current knowingly once),
    published or rejected."""

    version: str
    status: str
    organs: tuple[str, ...]
    created: str | None = None
    parent_version: str | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> VersionSummary:
        return cls(str(entry["version"]), str(entry["status"]), tuple(entry["organs"]), entry.get("created"), entry.get("parent_version"))

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "status": self.status, "organs": list(self.organs), "created": self.created,
                "parent_version": self.parent_version}


@dataclasses.dataclass(frozen=True)
class BundleDescription:
    """What a bundle shows about ``version`` (default its current one): its organs (``classes``, as classes.json
    lists them), its preprocessing and its lineage, with every version of the bundle."""

    bundle: str
    current: str
    version: str
    versions: tuple[VersionSummary, ...]
    classes: tuple[Mapping[str, Any], ...]
    preprocessing: Mapping[str, Any]
    history: tuple[StepRecord, ...]

    @classmethod
    def from_json(cls, description: Mapping[str, Any]) -> BundleDescription:
        return cls(
            bundle=str(description["bundle"]), current=str(description["current"]), version=str(description["version"]),
            versions=tuple(VersionSummary.from_json(v) for v in description["versions"]), classes=tuple(description["classes"]),
            preprocessing=description["preprocessing"], history=tuple(StepRecord.from_json(s) for s in description["history"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle, "current": self.current, "version": self.version, "versions": [v.to_json() for v in self.versions],
            "classes": [dict(c) for c in self.classes], "preprocessing": dict(self.preprocessing), "history": [s.to_json() for s in self.history],
        }


STATUS_PUBLISHED = "published"  # a version that may be made current
STATUS_REJECTED = "rejected"  # a step the forgetting guard refused; kept, current only when accepted knowingly


@dataclasses.dataclass(frozen=True)
class BundleSettings:
    """The ``ciss`` section of a version's ``configs/metadata.json``: how the version was made and must be run.

    ``network`` and ``preprocessing`` are checked on load (bundle_schema.py) and read by their own
    ``from_json``; what a writer records besides the named fields (the bundle format version, the feature
    layer) stays in ``details``, as written.
    """

    network: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    status: str = STATUS_PUBLISHED
    step: int = 1  # the class-incremental step that made the version (1: the base model or an import)
    parent_version: str | None = None
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # loop settings, batch, seed, run fingerprint
    strategy: Mapping[str, Any] | None = None  # a step's strategy and every setting of it
    forgetting_guard: Mapping[str, Any] | None = None
    source: Mapping[str, Any] | None = None  # an imported model's origin
    files_sha256: Mapping[str, str] | None = None  # the model files when the version was written
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    _OPTIONAL = ("strategy", "forgetting_guard", "source", "files_sha256")
    _ALWAYS = ("network", "preprocessing", "status", "step", "parent_version", "training")

    @classmethod
    def from_json(cls, section: Mapping[str, Any]) -> BundleSettings:
        named = {name: section[name] for name in (*cls._ALWAYS, *cls._OPTIONAL) if name in section}
        return cls(**named, details={key: value for key, value in section.items() if key not in named})

    def to_json(self) -> dict[str, Any]:
        written = {**self.details, **{name: getattr(self, name) for name in self._ALWAYS}}
        return {**written, **{name: getattr(self, name) for name in self._OPTIONAL if getattr(self, name) is not None}}
