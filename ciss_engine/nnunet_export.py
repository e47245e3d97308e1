"""``ciss export-model --format nnunet``: a bundle version imported from nnU-Net (and grown with ``ciss learn``)
written back as an nnU-Net v2 model folder, so a site keeps running it with ``nnUNetv2_predict_from_modelfolder``
(or under ``$nnUNet_results``) and its TotalSegmentator-style tooling.

The folder holds the source's plans.json unchanged (nnU-Net's plans do not record the number of classes),
dataset.json with the version's labels (the source's own names for the organs it had, the engine's for the
organs added since), and ``fold_<fold>/checkpoint_final.pth`` with the grown network's weights, every deep
supervision head included. Written in a staging folder and renamed into place: the output is whole or absent.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .atomic import staged_directory
from .bundle import BundleVersion
from .errors import InputError
from .importers.nnunet_folder import CHECKPOINT, DATASET, PLANS
from .nnunet_network import engine_weights_to_nnunet


def nnunet_source_or_raise(version: BundleVersion) -> dict[str, Any]:
    source = version.settings.source or {}
    if version.settings.network["name"] != "nnUNet" or not isinstance(source.get("nnunet"), dict):
        raise InputError(
            f"{version.path} was not imported from nnU-Net (its network is {version.settings.network['name']})",
            "only bundles made with `ciss import --format nnunet` can be exported as nnU-Net models; segment with `ciss segment` instead",
        )
    return source["nnunet"]


def exported_dataset(version: BundleVersion, source: dict[str, Any]) -> dict[str, Any]:
    """The source's dataset.json with the version's labels: source names where the organ came from the source."""
    renamed = (version.settings.source or {}).get("channel_names", {})
    dataset = copy.deepcopy(source["dataset"])
    dataset["labels"] = {"background": 0, **{renamed.get(organ.name, organ.name): organ.label for organ in version.registry.organs}}
    return dataset


def export_nnunet_model(version: BundleVersion, output: Path) -> Path:
    """Write ``version`` as an nnU-Net model folder at ``output`` (which must not exist yet); returns ``output``."""
    source = nnunet_source_or_raise(version)
    if output.exists():
        raise InputError(f"{output} already exists", "give a new folder for the nnU-Net model; nothing was overwritten")
    dataset = exported_dataset(version, source)
    axes = source.get("mirroring_axes")
    checkpoint = {
        "network_weights": engine_weights_to_nnunet(version.load_state_dict()),
        "init_args": {"plans": source["plans"], "configuration": source["configuration"], "fold": source["fold"], "dataset_json": dataset},
        "trainer_name": source["trainer_name"],
        "inference_allowed_mirroring_axes": None if axes is None else tuple(axes),
        "current_epoch": 0,
    }
    try:
        with staged_directory(output) as staging:
            (staging / PLANS).write_text(json.dumps(source["plans"], indent=2), encoding="utf-8")
            (staging / DATASET).write_text(json.dumps(dataset, indent=2), encoding="utf-8")
            fold = staging / f"fold_{source['fold']}"
            fold.mkdir()
            torch.save(checkpoint, fold / CHECKPOINT)
            licences = version.path / "docs" / "licences"
            if licences.is_dir():
                shutil.copytree(licences, staging / "licences")
    except FileExistsError as error:
        raise InputError(f"{output} appeared while the model was being written", "another process writes there; give a new folder") from error
    return output
