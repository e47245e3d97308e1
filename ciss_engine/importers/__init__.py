"""Importing a model a site already runs as a CISSegmentation bundle (``ciss import``, docs/import.md).

One module per job. MONAI bundles: monai_config (reading configs without running them), monai_network (network
and weights), monai_transforms (preprocessing and inferer), monai_classes (class registry, shared), monai_bundle
(putting them together). nnU-Net v2 models: nnunet_folder (layout, plans and refusals), nnunet_checkpoint (weights
without code), nnunet_model (putting them together). Shared: weights, imported_version, new_bundle (the atomic write).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError

FORMATS = ("auto", "monai-bundle", "nnunet")
NNUNET_FILES = ("plans.json", "dataset.json")


def looks_like_nnunet(folder: Path) -> bool:
    """An nnU-Net v2 results folder (trainer__plans__configuration) or its parent."""
    candidates = [folder, *(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    return any(all((candidate / name).is_file() for name in NNUNET_FILES) for candidate in candidates)


def detect_format_or_raise(folder: Path, requested: str) -> str:
    """The format to import ``folder`` as: the one asked for, or the one its files show for ``auto``."""
    from .monai_bundle import looks_like_monai_bundle

    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", "give the model's folder: a MONAI bundle (configs/, models/) or an nnU-Net model folder (plans.json, fold_0/)")
    if requested != "auto":
        return requested
    if looks_like_nnunet(folder):
        return "nnunet"
    if not looks_like_monai_bundle(folder):
        raise InputError(
            f"{folder} is neither a MONAI bundle nor an nnU-Net results folder",
            "a MONAI bundle holds configs/metadata.json, configs/inference.json (or .yaml) and models/model.pt; an nnU-Net model folder "
            "(<Trainer>__<Plans>__<configuration>) holds plans.json, dataset.json and fold_N/checkpoint_final.pth; give one of those",
        )
    return "monai-bundle"
