"""MONAI-bundle ``metadata.json`` and the generated model card of a bundle version."""
from __future__ import annotations

import datetime
from typing import Any

from . import __version__
from .monai_zoo_architecture import NETWORKS as MONAI_ZOO_NETWORKS
from .monai_zoo_architecture import describe as describe_monai_zoo
from .nnunet_architecture import describe as describe_nnunet
from .preprocessing_options import describe_intensity
from .registry import ClassRegistry

# The schema the MONAI model zoo's bundles name today; Testing/data holds a copy that a test validates every
# bundle's metadata against with MONAI's own verify_metadata.
METADATA_SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"


def describe_network(network: dict[str, Any]) -> str:
    if network["name"] == "nnUNet":
        return describe_nnunet(network)
    if network["name"] in MONAI_ZOO_NETWORKS:
        return describe_monai_zoo(network)
    return f"{network['name']} (init_filters {network['init_filters']})"


def build_metadata(*, version: str, registry: ClassRegistry, settings: dict[str, Any], changelog: dict[str, str]) -> dict[str, Any]:
    """Metadata in MONAI's bundle schema, ``channel_def`` generated from the registry, plus a ``ciss`` section."""
    import monai
    import numpy
    import torch

    patch = list(settings["preprocessing"]["patch_size"])
    return {
        "schema": METADATA_SCHEMA,
        "version": version,
        "changelog": changelog,
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {"cissegmentation": __version__},
        "name": "CISSegmentation organ segmentation",
        "task": f"Segmentation of {len(registry)} organs on CT",
        "description": "Class-incremental CT organ segmentation (SegResNet); organs can be added without old labels.",
        "authors": "CISSegmentation",
        "copyright": "Trained at the site that holds this bundle",
        # A model imported from another tool keeps its authors' credit (importers/, docs/import.md).
        **_source_credit(settings.get("source")),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": "CT",
                    "num_channels": 1,
                    "spatial_shape": patch,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": registry.num_classes,
                    "spatial_shape": patch,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": registry.channel_def(),
                }
            },
        },
        "ciss": {"format_version": 1, **settings},
    }


def _source_credit(source: dict[str, Any] | None) -> dict[str, str]:
    """Authors and copyright of an imported model's source, as its metadata.json gave them."""
    if not source:
        return {}
    return {
        "authors": f"{source.get('authors') or 'unknown'} (imported into CISSegmentation)",
        "copyright": source.get("copyright") or f"see the licence of {source.get('name', 'the source model')}",
    }


def _source_lines(source: dict[str, Any] | None) -> list[str]:
    """The model card's section on an imported model's origin and licence."""
    if not source:
        return []
    licences = ", ".join(f"`{path}`" for path in source.get("licence_files", [])) or "none was found in the source bundle"
    return [
        "## Source",
        "",
        f"Imported from the {source['format']} **{source.get('name', '')}** version {source.get('version', '?')} "
        f"({source.get('authors') or 'authors not stated'}; {source.get('copyright') or 'copyright not stated'}).",
        f"Licence texts carried over (paths in the bundle folder): {licences}.",
        "",
    ]


def model_card(metadata: dict[str, Any], registry: ClassRegistry, history: list[dict[str, Any]]) -> str:
    """A human-readable card: what the model segments, how it was trained, its lineage and metrics."""
    settings = metadata["ciss"]
    pre = settings["preprocessing"]
    lines = [
        f"# CISSegmentation model {metadata['version']}",
        "",
        f"Status: **{settings.get('status', 'published')}**. {metadata['task']}. Created {metadata['created']}.",
        "",
        "## Organs",
        "",
        "| label | organ | colour | SNOMED CT | added in step | version |",
        "|---:|---|---|---|---:|---|",
    ]
    for organ in registry.organs:
        code = f"{organ.type.scheme} {organ.type.code} {organ.type.meaning}" + (f" ({organ.modifier.meaning})" if organ.modifier else "")
        lines.append(f"| {organ.label} | {organ.name} | rgb{tuple(organ.rgb)} | {code} | {organ.step} | {organ.version_introduced} |")
    lines += [
        "",
        "## Input",
        "",
        f"CT in Hounsfield units, resampled to {pre['spacing_mm']} mm, {describe_intensity(pre)}, "
        f"patches {pre['patch_size']}. Network: {describe_network(settings['network'])}.",
        "",
        *_source_lines(settings.get("source")),
        "## Lineage",
        "",
        "| version | step | kind | organs | iterations | strategy | metrics |",
        "|---|---:|---|---|---:|---|---|",
    ]
    for entry in history:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in entry.get("metrics", {}).items() if isinstance(v, (int, float)))
        lines.append(
            f"| {entry.get('version')} | {entry.get('step')} | {entry.get('kind')} | {', '.join(entry.get('organs', []))} | "
            f"{entry.get('iterations', '')} | {entry.get('strategy', '')} | {metrics} |"
        )
    lines += ["", "Changelog:", ""] + [f"- {v}: {text}" for v, text in metadata["changelog"].items()]
    lines += ["", "Not for diagnostic use without validation at your site.", ""]
    return "\n".join(lines)
