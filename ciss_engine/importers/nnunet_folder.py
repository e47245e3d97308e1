"""An nnU-Net v2 trained-model folder (``<Trainer>__<Plans>__<configuration>/`` with ``plans.json``,
``dataset.json`` and ``fold_N/checkpoint_final.pth``): finding it, reading its JSON as data, and refusing the
models the engine cannot reproduce (region-based, cascade, ignore label, 2D, other normalisations) by name.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import InputError

PLANS = "plans.json"
DATASET = "dataset.json"
CHECKPOINT = "checkpoint_final.pth"
NORMALISATIONS = ("CTNormalization", "ZScoreNormalization")
NETWORK_MODULE = "dynamic_network_architectures.architectures."


def _is_model_folder(folder: Path) -> bool:
    return (folder / PLANS).is_file() and (folder / DATASET).is_file()


def read_json_or_raise(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}", "the file is damaged; copy the model folder again from its source") from error
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object", "the file is damaged; copy the model folder again from its source")
    return data


@dataclasses.dataclass(frozen=True)
class NnUNetModelFolder:
    """Where one fold of a trained nnU-Net model keeps what the importer reads."""

    root: Path
    fold: str

    @property
    def plans_path(self) -> Path:
        return self.root / PLANS

    @property
    def dataset_path(self) -> Path:
        return self.root / DATASET

    @property
    def checkpoint(self) -> Path:
        return self.root / f"fold_{self.fold}" / CHECKPOINT

    @classmethod
    def find_or_raise(cls, folder: Path, fold: str) -> NnUNetModelFolder:
        """``folder`` itself, or the one model folder inside it (a dataset's results folder holding one trainer)."""
        candidates = [folder] if _is_model_folder(folder) else sorted(p for p in folder.iterdir() if p.is_dir() and _is_model_folder(p))
        if not candidates:
            raise InputError(f"{folder} is not an nnU-Net results folder: it holds no {PLANS} and {DATASET}",
                             "give the trained model's folder, <Trainer>__<Plans>__<configuration>, e.g. nnUNetTrainer__nnUNetPlans__3d_fullres")
        if len(candidates) > 1:
            raise InputError(f"{folder} holds {len(candidates)} nnU-Net models: {', '.join(p.name for p in candidates)}", "give the folder of the one to import")
        found = cls(root=candidates[0], fold=fold)
        if not found.checkpoint.is_file():
            folds = sorted(p.name.removeprefix("fold_") for p in found.root.glob(f"fold_*/{CHECKPOINT}"))
            raise InputError(
                f"fold {fold} of {found.root} has no {CHECKPOINT} ({found.checkpoint} is missing)",
                f"choose a trained fold with --fold ({', '.join(folds)})" if folds else "the model was not trained to the end, or its checkpoints were not copied",
            )
        return found


def configuration_or_raise(plans: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """One configuration of ``plans.json`` with its ``inherits_from`` chain resolved, as nnU-Net's PlansManager does."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or name not in configurations:
        raise InputError(f"{path} has no configuration {name!r}", "the checkpoint and plans.json come from different models; copy the model folder again")
    chain, current = [], name
    while current is not None:
        if current in chain or current not in configurations:
            raise InputError(f"{path}: configuration {name!r} inherits from {current!r}, which is missing or circular", "the plans are damaged; copy the model folder again")
        chain.append(current)
        current = configurations[current].get("inherits_from")
    resolved: dict[str, Any] = {}
    for link in reversed(chain):
        resolved |= {k: v for k, v in configurations[link].items() if k != "inherits_from"}
    return resolved


def check_model_or_raise(configuration: dict[str, Any], name: str, dataset: dict[str, Any], folder: NnUNetModelFolder) -> None:
    """Refuse what the engine cannot run as nnU-Net would, saying what it is."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{folder.dataset_path} has no labels", "nnU-Net's dataset.json maps label names to values: {\"background\": 0, \"liver\": 1, …}")
    if any(isinstance(value, (list, tuple)) for value in labels.values()) or "regions_class_order" in dataset:
        raise InputError(f"{folder.root} is a region-based nnU-Net model (its labels are regions)",
                         "CISSegmentation imports models whose outputs are mutually exclusive classes; region-based models are not supported")
    if "ignore" in labels:
        raise InputError(f"{folder.root} was trained with an ignore label", "models trained with an ignore label (sparse annotations) are not supported")
    if configuration.get("previous_stage") or "cascade" in name:
        raise InputError(f"{folder.root} is the second stage of an nnU-Net cascade ({name})",
                         "the cascade needs the low-resolution stage's prediction as input; import the 3d_fullres or 3d_lowres model instead")
    if len(configuration.get("patch_size", [])) != 3:
        raise InputError(f"{folder.root} is a {len(configuration.get('patch_size', []))}D model ({name})", "CISSegmentation imports 3D models (3d_fullres or 3d_lowres)")
    channels = dataset.get("channel_names", dataset.get("modality", {}))
    if not isinstance(channels, dict) or len(channels) != 1:
        raise InputError(f"{folder.dataset_path}: the model reads {len(channels) if isinstance(channels, dict) else '?'} input channels", "CISSegmentation imports single-channel CT models")
    schemes = configuration.get("normalization_schemes")
    if not isinstance(schemes, list) or len(schemes) != 1 or schemes[0] not in NORMALISATIONS:
        raise InputError(f"{folder.plans_path}: normalisation {schemes!r} is not supported", f"the importer reproduces {', '.join(NORMALISATIONS)}")
    network_class = str(configuration.get("architecture", {}).get("network_class_name", ""))
    if not network_class.startswith(NETWORK_MODULE):
        raise InputError(f"{folder.plans_path}: network {network_class!r} is not from dynamic_network_architectures",
                         "the importer builds PlainConvUNet and ResidualEncoderUNet only, and never imports a class a model names")


def channel_names(dataset: dict[str, Any], path: Path) -> dict[int, str]:
    """Output channel → label name, from ``dataset.json``'s labels by value (never by position)."""
    channels: dict[int, str] = {}
    for name, value in dataset["labels"].items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value in channels:
            raise InputError(f"{path}: label {name!r} has the value {value!r}", "each label needs its own integer value, background 0")
        channels[value] = name
    if sorted(channels) != list(range(len(channels))):
        raise InputError(f"{path}: label values {sorted(channels)} are not 0…{len(channels) - 1}", "nnU-Net needs consecutive label values; the file is damaged")
    return channels
