"""Tiny MONAI Model Zoo bundles made in the tests: the zoo's folder layout and config structure
(wholeBody_ct_segmentation's: network_def, preprocessing, SlidingWindowInferer, postprocessing, and the
``$`` expressions the zoo writes for things the importer never reads), a small SegResNet, UNet, DynUNet or
SwinUNETR with seeded random weights, and metadata.json with channel_def."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from monai.networks import nets
from torch import nn

# A SegResNet of 3 levels and 8 filters: a CT of 60³ voxels runs in a fraction of a second on one core.
NETWORK_DEF = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 5, "init_filters": 8,
               "blocks_down": [1, 1, 1], "blocks_up": [1, 1], "dropout_prob": 0.2}
# The other networks the importer reads, as small: a UNet with residual units and batch norm (spleen_ct_segmentation's
# kind), a DynUNet with residual blocks and a deep-supervision head, a SwinUNETR of the smallest feature size.
UNET_DEF = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 5, "channels": [4, 8, 16], "strides": [2, 2],
            "num_res_units": 1, "norm": "batch"}
DYNUNET_DEF = {"_target_": "DynUNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 5, "kernel_size": [3, 3, 3], "strides": [1, 2, 2],
               "upsample_kernel_size": [2, 2], "filters": [4, 8, 16], "res_block": True, "deep_supervision": True, "deep_supr_num": 1}
SWIN_UNETR_DEF = {"_target_": "SwinUNETR", "spatial_dims": 3, "in_channels": 1, "out_channels": 5, "feature_size": 12, "depths": [1, 1, 1, 1],
                  "num_heads": [1, 1, 1, 1], "window_size": 4}
# The layer that outputs the classes, per network (sharpened in source_network).
FINAL_LAYERS: dict[str, Any] = {
    "SegResNet": lambda n: n.conv_final[2].conv,
    "UNet": lambda n: n.model[2][1].conv.unit0.conv if n.num_res_units else n.model[2].conv,
    "DynUNet": lambda n: n.output_block.conv.conv,
    "SwinUNETR": lambda n: n.out.conv.conv,
}
CHANNELS = ["background", "spleen", "Right Kidney", "kidney_left", "Tumour Bed"]
LICENCE = "Apache License, Version 2.0 (test bundle)\n"


def inference_config(pixdim: float = 5.0, roi: int | list[int] = 32, network_def: dict[str, Any] = NETWORK_DEF) -> dict[str, Any]:
    """The zoo's inference.json structure (wholeBody_ct_segmentation), scaled down."""
    return {
        "displayable_configs": {"highres": True, "sw_overlap": 0.25, "sw_batch_size": 1},
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "dataset_dir": "sampledata",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "pixdim": f"$[{pixdim}, {pixdim}, {pixdim}] if @displayable_configs#highres else [{2 * pixdim}, {2 * pixdim}, {2 * pixdim}]",
        "modelname": "$'model.pt' if @displayable_configs#highres else 'model_lowres.pt'",
        "network_def": copy.deepcopy(network_def),
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key"},
                {"_target_": "EnsureTyped", "keys": "@image_key"},
                {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
                {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "@image_key", "pixdim": "@pixdim", "mode": "bilinear"},
                {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
                {"_target_": "ScaleIntensityd", "keys": "@image_key", "minv": -1.0, "maxv": 1.0},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False, "num_workers": 0},
        "inferer": {
            "_target_": "SlidingWindowInferer", "roi_size": roi if isinstance(roi, list) else [roi, roi, roi], "sw_batch_size": "@displayable_configs#sw_batch_size",
            "overlap": "@displayable_configs#sw_overlap", "padding_mode": "replicate", "mode": "gaussian",
            "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key", "nearest_interp": True, "to_tensor": True},
                {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
                 "output_dtype": "@output_dtype", "output_postfix": "@output_postfix", "separate_folder": "@separate_folder"},
            ],
        },
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader", "network": "@network",
                      "inferer": "@inferer", "postprocessing": "@postprocessing", "val_handlers": "@handlers", "amp": True},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/' + @modelname", "load_dict": {"model": "@network"}},
        "initialize": ["$setattr(torch.backends.cudnn, 'benchmark', True)", "$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }


def window_first_config() -> dict[str, Any]:
    """Another zoo style (spleen_ct_segmentation's transforms on a SegResNet): a HU window scaled to [0, 1] before
    resampling to an anisotropic grid, and MONAI's default inferer settings (overlap 0.25, constant blending)."""
    config = inference_config()
    config["preprocessing"]["transforms"] = [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -175, "a_max": 250, "b_min": 0.0, "b_max": 1.0, "clip": True},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [4.0, 4.0, 5.0], "mode": "bilinear", "padding_mode": "zeros"},
    ]
    config["inferer"] = {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 4}
    config["postprocessing"]["transforms"][2]["orig_keys"] = "image"
    return config


def metadata(channels: list[str]) -> dict[str, Any]:
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.9", "changelog": {"0.1.9": "test bundle"}, "monai_version": "1.6.1", "pytorch_version": "2.13.0",
        "numpy_version": "2.0.0", "name": "Tiny whole body CT segmentation", "task": "test", "authors": "MONAI team (test)",
        "copyright": "Copyright (c) MONAI Consortium",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1, "channel_def": {"0": "image"}}},
            # Listed in reverse on purpose: channels are read by number, never by position in the file.
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(channels),
                                 "channel_def": {str(i): name for i, name in reversed(list(enumerate(channels)))}}},
        },
    }


def source_network(network_def: dict[str, Any] = NETWORK_DEF, seed: int = 0) -> nn.Module:
    """MONAI's own network of ``network_def``, with seeded random weights (the model a site would run)."""
    torch.manual_seed(seed)
    arguments = {k: v for k, v in network_def.items() if k != "_target_"}
    network = getattr(nets, network_def["_target_"])(**arguments).eval()
    with torch.no_grad():  # a sharper head: fewer near-ties between classes than at initialisation
        FINAL_LAYERS[network_def["_target_"]](network).weight.mul_(4.0)
    return network


def write_zoo_bundle(folder: Path, *, config: dict[str, Any] | None = None, channels: list[str] | None = None, seed: int = 0) -> Path:
    """A zoo-layout bundle at ``folder``: configs/inference.json, configs/metadata.json, models/model.pt, LICENSE, docs/."""
    config = config or inference_config()
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "docs").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata(channels or CHANNELS), indent=2))
    network_def = config["network_def"] if isinstance(config.get("network_def"), dict) else NETWORK_DEF
    if network_def.get("_target_") in FINAL_LAYERS:
        torch.save(source_network(network_def, seed).state_dict(), folder / "models" / "model.pt")
    (folder / "LICENSE").write_text(LICENCE)
    (folder / "docs" / "data_license.txt").write_text("Data: TotalSegmentator, CC BY 4.0 (test bundle)\n")
    (folder / "docs" / "README.md").write_text("# Tiny test bundle\n")
    return folder
