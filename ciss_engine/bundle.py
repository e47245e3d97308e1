"""The deployed model: a directory of versions, each a MONAI-bundle-layout folder.

```
BUNDLE/bundle.json                      {"format": "ciss-bundle", "format_version": 1, "current": "1.1.0"}
BUNDLE/versions/<semver>/configs/metadata.json   MONAI metadata + "ciss" section (network, preprocessing, status…)
                        configs/classes.json     class registry
                        models/model.pt          state dict, loaded with weights_only=True
                        models/prototypes.safetensors
                        models/replay_buffer.safetensors (domain steps only: replay_buffer.py)
                        (metadata.json's ciss.files_sha256 holds the SHA-256 of the model files)
                        docs/history.json        lineage of every step up to this version
                        docs/README.md           model card
```
A version is written into a staging folder and renamed into place when complete; ``bundle.json`` is
replaced atomically to switch versions, so a reader never sees half a version and rollback is a
pointer change. Publishing (rename, then switch) is announced in ``BUNDLE/.publishing.json`` first: a
writer killed between the two leaves that note, and the next writer, holding the lock, finishes the
switch (``finish_interrupted_publication``) and removes what dead writers left (temporary files,
staging folders). Loading never executes code: weights go through ``torch.load(weights_only=True)``,
prototypes through safetensors, everything else is JSON. The model files are checked against the
SHA-256 recorded when the version was written, so a file changed since then is named, not used.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from .api.bundle_record import STATUS_REJECTED, BundleDescription, BundleSettings, StepRecord, VersionSummary
from .atomic import STAGING_PREFIX, json_bytes, output_error, staged_directory, temporary_glob, write_json_atomic
from .bundle_schema import SEMVER, check_history_or_raise, check_metadata_or_raise, check_pointer_or_raise, check_prototypes_or_raise
from .errors import BundleError, InputError, OutputError
from .fault_points import fault_point
from .registry import ClassRegistry

if TYPE_CHECKING:
    from .replay_buffer import ReplayBuffer

FORMAT = "ciss-bundle"
FORMAT_VERSION = 1
# The files whose SHA-256 a version records (relative to its folder), and what ``check_files`` reports.
CHECKSUMMED_FILES = ("models/model.pt", "models/prototypes.safetensors", "models/replay_buffer.safetensors")
FILE_OK, FILE_CHANGED, FILE_MISSING = "ok", "changed", "missing"
# The version being published (its folder renamed into place, bundle.json not yet switched to it).
PUBLISHING_NAME = ".publishing.json"
TAMPER_HINT = "the version's files are no longer those it was written with: restore the bundle from a backup, or roll back to another version (ciss rollback)"

LOG = logging.getLogger(__name__)


def semver_key(version: str) -> Version:
    """``version`` for ordering (``packaging``); a bundle names versions ``MAJOR.MINOR.PATCH`` only, so "1.2" is refused."""
    if not SEMVER.match(version):
        raise BundleError(f"invalid version {version!r}", "versions are semantic versions such as 1.2.0")
    return Version(version)


def next_minor(version: str) -> str:
    """The version a learning step writes after ``version``: 1.2.3 → 1.3.0."""
    parsed = semver_key(version)
    return f"{parsed.major}.{parsed.minor + 1}.0"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _log_unverified(version_path: Path) -> None:
    """Once per version and process: a version written before checksums loads, unchecked, and says so."""
    LOG.warning("%s was written before bundles recorded checksums: its model files are loaded without a tamper check", version_path)


def _read_json_or_raise(path: Path, what: str) -> Any:
    if not path.is_file():
        raise BundleError(f"{what} is missing: {path}", f"{path.parent.parent} is not a complete CISSegmentation bundle version; roll back or retrain")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{what} is not valid JSON: {path} ({error})", "the file is damaged; restore the bundle from a backup or roll back to another version") from error


@dataclasses.dataclass(frozen=True)
class BundleVersion:
    """One version of a bundle, validated on load; weights are read only when asked for."""

    path: Path
    metadata: dict[str, Any]
    registry: ClassRegistry
    history: list[dict[str, Any]]

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def settings(self) -> BundleSettings:
        """The ``ciss`` section of metadata.json: network, preprocessing, status, training settings."""
        return BundleSettings.from_json(self.metadata["ciss"])

    @property
    def status(self) -> str:
        return self.settings.status

    @property
    def model_path(self) -> Path:
        return self.path / "models" / "model.pt"

    @property
    def prototypes_path(self) -> Path:
        return self.path / "models" / "prototypes.safetensors"

    @property
    def replay_buffer_path(self) -> Path:
        return self.path / "models" / "replay_buffer.safetensors"

    @property
    def recorded_sha256(self) -> dict[str, str] | None:
        """SHA-256 of the model files when the version was written; None for versions older than checksums."""
        return None if self.settings.files_sha256 is None else dict(self.settings.files_sha256)

    def check_files(self) -> dict[str, str]:
        """Each recorded file: ``ok``, ``changed`` or ``missing`` (empty for a version without checksums)."""
        states = {}
        for name, recorded in (self.recorded_sha256 or {}).items():
            path = self.path / name
            states[name] = FILE_MISSING if not path.is_file() else FILE_OK if sha256_of(path) == recorded else FILE_CHANGED
        return states

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def _read_verified(self, path: Path) -> bytes:
        """The bytes of a model file, after checking them against the recorded SHA-256 (read once: what is
        checked is what is loaded)."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise BundleError(f"cannot read {path}: {error.strerror}", f"check that {path} is readable") from error
        recorded = self.recorded_sha256
        if recorded is None:
            _log_unverified(self.path)
        elif hashlib.sha256(data).hexdigest() != recorded.get(self._relative(path)):
            raise BundleError(f"{path} has changed since version {self.version} was written (its SHA-256 differs from the one in configs/metadata.json)", TAMPER_HINT)
        return data

    def load_state_dict(self) -> dict[str, Any]:
        """The network weights; refuses anything but tensors (no code from the bundle runs)."""
        import torch

        if not self.model_path.is_file():
            raise BundleError(f"model weights are missing: {self.model_path}", "the bundle version is incomplete; roll back to another version or retrain")
        data = self._read_verified(self.model_path)
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise BundleError(
                f"refused to load {self.model_path}: it contains objects other than tensors",
                "a bundle holds a plain state dict only; this file may be malicious or from another tool — do not use it, retrain or restore a trusted copy",
            ) from error
        except Exception as error:  # torch.load reports junk as RuntimeError, EOFError, struct.error, ValueError…
            raise BundleError(f"cannot read model weights {self.model_path}: {error}", "the file is damaged; restore the bundle from a backup or roll back") from error
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise BundleError(f"{self.model_path} is not a state dict", "a bundle holds a plain state dict saved with torch.save(model.state_dict())")
        return state

    def _load_safetensors(self, path: Path, what: str) -> dict[str, Any]:
        """The tensors of a checksummed safetensors file (no code runs); {} when the version has none."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        if not path.is_file():
            if self._relative(path) in (self.recorded_sha256 or {}):
                raise BundleError(f"{what} are missing: {path}", TAMPER_HINT)
            return {}
        try:
            return load(self._read_verified(path))
        except SafetensorError as error:
            raise BundleError(f"cannot read {what} {path}: {error}", "the file is damaged; restore the bundle from a backup or roll back") from error

    def load_prototypes(self) -> dict[str, Any]:
        """Global prototypes, voxel counts and per-class τ as tensors (safetensors: no code)."""
        tensors = self._load_safetensors(self.prototypes_path, "prototypes")
        if tensors:
            check_prototypes_or_raise(tensors, self.registry.num_classes, self.prototypes_path)
        return tensors

    def load_replay_buffer(self) -> ReplayBuffer | None:
        """The replay buffer of a domain step (replay_buffer.py), checked; None for a version without one."""
        from .replay_buffer import ReplayBuffer

        tensors = self._load_safetensors(self.replay_buffer_path, "replay buffer vectors")
        return ReplayBuffer.from_tensors_or_raise(tensors, num_classes=self.registry.num_classes, path=self.replay_buffer_path) if tensors else None


def load_version_or_raise(path: Path) -> BundleVersion:
    """Read and validate one version folder (``configs/``, ``models/``, ``docs/``)."""
    path = Path(path)
    metadata = _read_json_or_raise(path / "configs" / "metadata.json", "bundle metadata")
    if not isinstance(metadata, dict) or "ciss" not in metadata:
        raise BundleError(
            f"{path / 'configs' / 'metadata.json'} is not a CISSegmentation bundle (no 'ciss' section)",
            "this looks like a bundle from another tool; CISSegmentation can only load bundles it wrote (ciss train)",
        )
    settings = metadata["ciss"]
    if isinstance(settings, dict) and settings.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path / 'configs' / 'metadata.json'} has bundle format {settings.get('format_version')!r}, this engine reads {FORMAT_VERSION}",
            "upgrade CISSegmentation to the version that wrote this bundle",
        )
    check_metadata_or_raise(metadata, path / "configs" / "metadata.json")
    classes_path = path / "configs" / "classes.json"
    classes = _read_json_or_raise(classes_path, "class registry")
    try:
        registry = ClassRegistry.from_json(classes)
    except (KeyError, TypeError, ValueError, AttributeError, InputError) as error:
        raise BundleError(f"{classes_path} has a wrong schema: {error!r}", "the class registry is damaged; restore it from a backup or roll back") from error
    if settings["network"]["out_channels"] != registry.num_classes:
        raise BundleError(
            f"{classes_path} lists {len(registry)} organs but the network in {path / 'configs' / 'metadata.json'} has {settings['network']['out_channels']} outputs",
            "the bundle version is inconsistent; roll back to another version",
        )
    history_path = path / "docs" / "history.json"
    history = _read_json_or_raise(history_path, "bundle history")
    check_history_or_raise(history, history_path)
    return BundleVersion(path=path, metadata=metadata, registry=registry, history=history)


class Bundle:
    """A bundle root: its versions and which one is current."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def pointer_path(self) -> Path:
        return self.root / "bundle.json"

    @classmethod
    def open_or_raise(cls, root: Path) -> Bundle:
        root = Path(root)
        if not root.exists():
            raise BundleError(f"bundle not found: {root}", "give the folder written by `ciss train` (it holds bundle.json and versions/)")
        bundle = cls(root)
        pointer = _read_json_or_raise(bundle.pointer_path, "bundle pointer")
        if not isinstance(pointer, dict) or pointer.get("format") != FORMAT:
            raise BundleError(f"{bundle.pointer_path} is not a CISSegmentation bundle pointer", "give the folder written by `ciss train`")
        return bundle

    def _pointer(self) -> dict[str, Any]:
        pointer = _read_json_or_raise(self.pointer_path, "bundle pointer")
        check_pointer_or_raise(pointer, self.pointer_path)
        return pointer

    @property
    def current_version(self) -> str:
        return str(self._pointer()["current"])

    @property
    def accepted_versions(self) -> list[str]:
        """Rejected versions a user made current knowingly (``rollback --accept-forgetting``)."""
        return list(self._pointer().get("accepted_versions", []))

    def versions(self) -> list[str]:
        folder = self.root / "versions"
        names = [p.name for p in folder.iterdir() if p.is_dir() and SEMVER.match(p.name)] if folder.is_dir() else []
        return sorted(names, key=semver_key)

    def version_path(self, version: str) -> Path:
        return self.root / "versions" / version

    def load(self, version: str | None = None) -> BundleVersion:
        """Load ``version`` (default: the current one)."""
        version = version or self.current_version
        if version not in self.versions():
            raise BundleError(f"version {version} does not exist in {self.root}", f"available versions: {', '.join(self.versions()) or 'none'}")
        return load_version_or_raise(self.version_path(version))

    def set_current(self, version: str, *, accept_rejected: bool = False) -> None:
        """Point ``bundle.json`` at ``version``; a rejected version only when accepted knowingly.

        An acceptance is recorded in ``bundle.json`` (``accepted_versions``): the version folder
        itself, with the guard's verdict, is never rewritten.
        """
        loaded = self.load(version)
        pointer = self._pointer()
        accepted = self.accepted_versions
        if loaded.status == STATUS_REJECTED and version not in accepted:
            if not accept_rejected:
                raise BundleError(
                    f"version {version} was rejected by the forgetting guard",
                    "learn again with different settings, or accept the step knowingly with --accept-forgetting",
                )
            accepted.append(version)
        write_json_atomic(self.pointer_path, {**pointer, "current": version, "accepted_versions": accepted})

    def next_version(self) -> str:
        return next_minor(self.versions()[-1])


def describe_bundle(root: Path, version: str | None = None) -> BundleDescription:
    """What ``ciss info``, the Slicer module and the studio show about a bundle (no torch)."""
    bundle = Bundle.open_or_raise(root)
    current = bundle.current_version
    shown = bundle.load(version)
    accepted = bundle.accepted_versions
    versions = []
    for name in bundle.versions():
        loaded = bundle.load(name)
        status = "current" if name == current else "accepted" if name in accepted else loaded.status
        versions.append(VersionSummary(name, status, tuple(loaded.registry.names), loaded.metadata.get("created"), loaded.settings.parent_version))
    return BundleDescription(
        bundle=str(root), current=current, version=shown.version, versions=tuple(versions), classes=tuple(shown.registry.to_json()["classes"]),
        preprocessing=shown.settings.preprocessing, history=tuple(StepRecord.from_json(entry) for entry in shown.history),
    )


def _point_at(root: Path, version: str) -> None:
    """Make ``version`` current in ``root/bundle.json`` (creating it for a new bundle), atomically."""
    pointer = root / "bundle.json"
    previous = json.loads(pointer.read_text(encoding="utf-8")) if pointer.exists() else {"format": FORMAT, "format_version": FORMAT_VERSION}
    write_json_atomic(pointer, {**previous, "current": version})


def _stage_version(final: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path → bytes) into a staging folder renamed to ``final`` when complete; a
    full disk names the file the version would have held."""
    try:
        with staged_directory(final) as staging:
            for name, data in files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    (staging / name).write_bytes(data)
                except OSError as error:
                    raise output_error(final / name, error) from error
                if name == "models/model.pt":
                    fault_point("version:model")
    except FileExistsError as error:
        root = final.parent.parent
        raise BundleError(
            f"version {final.name} of bundle {root} already exists",
            f"nothing was overwritten: a version is never replaced. `ciss versions -b {root}` lists the versions; "
            "`ciss learn` run again writes the next one, `ciss train` needs a new output folder",
        ) from error


def _discard(folder: Path) -> None:
    """Remove a version folder that never became current: renamed out of ``versions/`` first, so no reader
    ever lists a half-deleted version."""
    hidden = folder.with_name(f"{STAGING_PREFIX}{folder.name}-discarded")
    folder.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def finish_interrupted_publication(root: Path, log: Callable[[str], None]) -> None:
    """What the next writer does, holding the lock, about a writer killed while it wrote ``root``.

    Temporary files of atomic writes and staging folders are removed (only writers make them, and every
    writer holds the lock). A version that was renamed into place while its writer was making it current
    is complete (the rename is atomic): it is made current, as that writer would have done."""
    root = Path(root)
    journal = root / PUBLISHING_NAME
    leftovers = [*root.glob(temporary_glob(root / "bundle.json")), *root.glob(temporary_glob(journal)), *(root / "versions").glob(f"{STAGING_PREFIX}*")]
    for leftover in leftovers:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    if not journal.is_file():
        return
    version = str(_read_json_or_raise(journal, "publication note").get("version", ""))
    folder = root / "versions" / version
    if SEMVER.match(version) and folder.is_dir():
        load_version_or_raise(folder)
        _point_at(root, version)
        log(f"version {version} of {root} was written by a run that stopped before making it current: it is current now")
    journal.unlink()


def write_version(
    root: Path,
    *,
    version: str,
    registry: ClassRegistry,
    settings: dict[str, Any],
    state_dict: dict[str, Any],
    prototypes: dict[str, Any],
    history: list[dict[str, Any]],
    changelog: dict[str, str],
    make_current: bool,
    replay_buffer: dict[str, Any] | None = None,
) -> BundleVersion:
    """Write a complete version into ``root/versions/<version>`` atomically; optionally make it current.
    ``replay_buffer``: a domain step's feature vectors (replay_buffer.py), as tensors.

    The model files are serialised first, so metadata.json can record their SHA-256 (``ciss.files_sha256``).
    A write that fails (a full disk: exit 5) leaves the bundle as it was."""
    import torch
    from safetensors.torch import save

    from .bundle_metadata import build_metadata, model_card

    root = Path(root)
    final = root / "versions" / version
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, buffer)
    files = {"models/model.pt": buffer.getvalue()}
    if prototypes:
        files["models/prototypes.safetensors"] = save({k: v.detach().cpu().contiguous() for k, v in prototypes.items()})
    if replay_buffer:
        files["models/replay_buffer.safetensors"] = save({k: v.detach().cpu().contiguous() for k, v in replay_buffer.items()})
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items() if name in CHECKSUMMED_FILES}
    metadata = build_metadata(version=version, registry=registry, settings={**settings, "files_sha256": hashes}, changelog=changelog)
    files |= {
        "configs/metadata.json": json_bytes(metadata),
        "configs/classes.json": json_bytes(registry.to_json()),
        "docs/history.json": json_bytes(history),
        "docs/README.md": model_card(metadata, registry, history).encode("utf-8"),
    }
    journal = root / PUBLISHING_NAME if make_current else None
    if journal:
        write_json_atomic(journal, {"version": version})
    try:
        _stage_version(final, files)
    except BaseException:
        if journal:
            journal.unlink(missing_ok=True)
        raise
    if journal:
        try:
            _point_at(root, version)
        except OutputError:  # bundle.json could not be replaced (a disk full to the byte): undo the version
            _discard(final)
            journal.unlink(missing_ok=True)
            raise
        journal.unlink()
        fault_point("version:published")
    return load_version_or_raise(final)
