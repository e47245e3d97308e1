"""``ciss import --format monai-bundle``: a MONAI Model Zoo bundle folder → a CISSegmentation bundle, version 1.0.0.

Reads ``configs/metadata.json`` (classes), ``configs/inference.json|yaml`` (network, preprocessing, inferer)
and ``models/model.pt`` (weights) without running anything from them (monai_config.py), checks that the
mapped network gives MONAI's own outputs, and writes the bundle with the source recorded in its settings,
history and model card, and the source's licence texts copied into ``docs/licences/``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..bundle import BundleVersion
from ..bundle_schema import patch_multiples
from ..errors import InputError
from ..events import EventSink
from .monai_classes import registry_from_metadata_or_raise
from .monai_config import ConfigReader, load_config_file_or_raise
from .monai_network import load_source_weights_or_raise, network_from_source_or_raise, source_network_or_raise
from .monai_transforms import source_preprocessing_or_raise
from .imported_version import files_sha256, licence_files, write_imported_bundle
from .new_bundle import check_output_or_raise

FORMAT = "monai-bundle"
INFERENCE_CONFIGS = ("configs/inference.json", "configs/inference.yaml", "configs/inference.yml")
METADATA = "configs/metadata.json"
WEIGHTS = "models/model.pt"
# The mapped network may differ from MONAI's by float rounding only.
PARITY_TOLERANCE = 1e-3
STAGES = 4


@dataclasses.dataclass(frozen=True)
class MonaiBundleLayout:
    """Where a MONAI bundle keeps what the importer reads."""

    root: Path
    metadata: Path
    inference: Path
    weights: Path

    @classmethod
    def find_or_raise(cls, root: Path) -> MonaiBundleLayout:
        configs = [root / name for name in INFERENCE_CONFIGS if (root / name).is_file()]
        if not (root / METADATA).is_file() or not configs:
            missing = METADATA if not (root / METADATA).is_file() else "configs/inference.json (or .yaml)"
            raise InputError(f"{root} is not a MONAI bundle: {missing} is missing", "give the bundle's folder, the one that holds configs/ and models/")
        return cls(root=root, metadata=root / METADATA, inference=configs[0], weights=root / WEIGHTS)


def looks_like_monai_bundle(folder: Path) -> bool:
    return (folder / METADATA).is_file() and any((folder / name).is_file() for name in INFERENCE_CONFIGS)


def _source_record(layout: MonaiBundleLayout, metadata: dict[str, Any], renamed: dict[str, str], licences: dict[str, Path]) -> dict[str, Any]:
    """What the bundle keeps about its origin (``ciss.source``; model card and history)."""
    return {
        "format": FORMAT,
        "name": str(metadata.get("name", layout.root.name)),
        "version": str(metadata.get("version", "")),
        "authors": str(metadata.get("authors", "")),
        "copyright": str(metadata.get("copyright", "")),
        "license": str(metadata.get("license", "")),
        "folder": str(layout.root.resolve()),
        "files_sha256": files_sha256(layout.root, [layout.metadata, layout.inference, layout.weights]),
        "channel_names": renamed,  # engine name → the source's name, where they differ
        "licence_files": sorted(licences),
    }


def import_monai_bundle(source: Path, output: Path, *, sink: EventSink) -> BundleVersion:
    """Read, check and map the bundle at ``source``; write it as a new bundle at ``output``."""
    check_output_or_raise(output)
    layout = MonaiBundleLayout.find_or_raise(source)
    sink.progress("import", 0, STAGES)
    metadata = load_config_file_or_raise(layout.metadata)
    if not isinstance(metadata, dict):
        raise InputError(f"{layout.metadata} does not hold a JSON object", "the bundle's metadata is damaged; download the bundle again")
    reader = ConfigReader.open_or_raise(layout.inference, source)
    network = source_network_or_raise(reader)
    registry, renamed = registry_from_metadata_or_raise(metadata, layout.metadata, network.config.out_channels)
    preprocessing = source_preprocessing_or_raise(reader, patch_multiples(network.config.to_json()))
    sink.progress("import", 1, STAGES)
    weights = load_source_weights_or_raise(layout.weights)
    sink.progress("import", 2, STAGES)
    mapped, difference = network_from_source_or_raise(network.config, weights, layout.weights, layout.inference)
    if difference > PARITY_TOLERANCE:
        raise InputError(f"the imported network's outputs differ from MONAI's {network.config.name} by {difference:.3g}", "this is a bug in the importer: please report it with the bundle's name")
    sink.progress("import", 3, STAGES)
    licences = licence_files([source])
    record = _source_record(layout, metadata, renamed, licences)
    version = write_imported_bundle(
        output, registry=registry, network=network.config.to_json(), preprocessing=preprocessing.to_json(), source=record,
        state_dict=mapped.state_dict(), notes=list(network.notes), metrics={"max_logit_difference_to_source": difference}, licences=licences,
        description=f"imported from the MONAI bundle {record['name']} {record['version']}".rstrip(),
    )
    sink.progress("import", STAGES, STAGES)
    for note in network.notes:
        sink.log(note)
    return version
