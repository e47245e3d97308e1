"""What every import writes the same way: the source's licence texts and file digests, the history entry,
and the new bundle (version 1.0.0, published, current), written all at once (new_bundle.py)."""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import torch

from ..api.bundle_record import STATUS_PUBLISHED
from ..bundle import BundleVersion, write_version
from ..registry import ClassRegistry
from .new_bundle import write_new_bundle

VERSION = "1.0.0"
LICENCE_PATTERNS = ("LICENSE*", "LICENCE*", "COPYING*", "docs/*licen[cs]e*", "docs/*LICEN[CS]E*")
MAX_LICENCE_BYTES = 1 << 20


def licence_files(roots: list[Path]) -> dict[str, Path]:
    """The licence texts in ``roots`` (the model folder first) → their place in the new version
    (``docs/licences/<name>``); a name found in an earlier root wins."""
    found: dict[str, Path] = {}
    for root in roots:
        for pattern in LICENCE_PATTERNS:
            for path in sorted(root.glob(pattern)):
                if path.is_file() and path.stat().st_size <= MAX_LICENCE_BYTES:
                    relative = path.relative_to(root).as_posix().replace("/", "_")
                    found.setdefault(f"versions/{VERSION}/docs/licences/{relative}", path)
    return found


def files_sha256(root: Path, files: list[Path]) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def write_imported_bundle(
    output: Path, *, registry: ClassRegistry, network: dict[str, Any], preprocessing: dict[str, Any], source: dict[str, Any],
    state_dict: dict[str, torch.Tensor], notes: list[str], metrics: dict[str, float], licences: dict[str, Path], description: str,
) -> BundleVersion:
    """The new bundle at ``output``: ``source`` (format, name, version, folder, files_sha256, …) goes into the
    settings, the history and the model card; ``description`` is the changelog line."""
    settings = {
        "status": STATUS_PUBLISHED, "step": 1, "network": network, "feature_layer": "decoder_final",
        "preprocessing": preprocessing, "source": source, "parent_version": None,
    }
    history = [{
        "version": VERSION, "step": 1, "kind": "import", "organs": registry.names,
        "strategy": f"imported from {source['format']} {source['name']} {source['version']}".strip(),
        "source": {k: source[k] for k in ("format", "name", "version", "folder", "files_sha256")},
        "notes": notes, "metrics": metrics, "parent_version": None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }]

    def write(root: Path) -> None:
        write_version(
            root, version=VERSION, registry=registry, settings=settings, state_dict=state_dict, prototypes={},
            history=history, changelog={VERSION: description}, make_current=True,
        )

    return write_new_bundle(output, write, licences)
