"""What an imported MONAI UNet, DynUNet or SwinUNETR may be, checked as plain JSON (no torch: ``bundle_schema``
uses it when ``ciss info`` reads a bundle, the MONAI-bundle importer when it reads ``network_def``).

Each network has an explicit list of the arguments read, with MONAI's defaults (monai.networks.nets, MONAI 1.6);
any other argument is refused by the importer. The checks say what the engine reproduces: a 3-D network on one
CT channel with 2-256 outputs, whose output grid is its input grid, whose final layer can be widened with MiB's
initialisation (monai_zoo_network.py), with norms and activations from a short allow-list and literal arguments.
Dropout arguments are read and left out: dropout does nothing at inference, and ``ciss learn`` trains without it.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from .nnunet_architecture import is_literal

NETWORKS = ("UNet", "DynUNet", "SwinUNETR")
MAX_CLASSES = 256
# Arguments the engine sets itself when it builds the network (also those of SegResNet).
SET_BY_ENGINE = ("spatial_dims", "in_channels", "out_channels")
# Every argument the importer reads, with MONAI's default; None where MONAI has none (the bundle must give it).
ARGUMENTS: dict[str, dict[str, Any]] = {
    "UNet": {
        "spatial_dims": None, "in_channels": None, "out_channels": None, "channels": None, "strides": None, "kernel_size": 3,
        "up_kernel_size": 3, "num_res_units": 0, "act": "PRELU", "norm": "INSTANCE", "dropout": 0.0, "bias": True, "adn_ordering": "NDA",
    },
    "DynUNet": {
        "spatial_dims": None, "in_channels": None, "out_channels": None, "kernel_size": None, "strides": None, "upsample_kernel_size": None,
        "filters": None, "dropout": None, "norm_name": ["INSTANCE", {"affine": True}], "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
        "deep_supervision": False, "deep_supr_num": 1, "res_block": False, "trans_bias": False,
    },
    "SwinUNETR": {
        "in_channels": None, "out_channels": None, "patch_size": 2, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24], "window_size": 7,
        "qkv_bias": True, "mlp_ratio": 4.0, "feature_size": 24, "norm_name": "instance", "drop_rate": 0.0, "attn_drop_rate": 0.0,
        "dropout_path_rate": 0.0, "normalize": True, "patch_norm": False, "spatial_dims": 3, "downsample": "merging", "use_v2": False,
    },
}
# Dropout arguments: read, checked, left out of the engine's network (MONAI's value for "none").
LEFT_OUT: dict[str, dict[str, Any]] = {
    "UNet": {"dropout": 0.0},
    "DynUNet": {"dropout": None},
    "SwinUNETR": {"drop_rate": 0.0, "attn_drop_rate": 0.0, "dropout_path_rate": 0.0},
}
# Arguments that change nothing the engine computes: memory only (use_checkpoint), or gone from MONAI (img_size,
# which SwinUNETR ignored since MONAI 1.3 and no longer takes; the zoo's older configs still set it).
IGNORED: dict[str, frozenset[str]] = {"UNet": frozenset(), "DynUNet": frozenset(), "SwinUNETR": frozenset({"use_checkpoint", "img_size"})}
STORED: dict[str, tuple[str, ...]] = {
    name: tuple(key for key in arguments if key not in SET_BY_ENGINE and key not in LEFT_OUT[name]) for name, arguments in ARGUMENTS.items()
}
# MONAI layer names (monai.networks.layers.Norm/Act, any case) the engine builds, and the arguments they may take.
NORMS = ("instance", "batch")
NORM_KEYS = frozenset({"affine", "eps", "momentum", "track_running_stats"})
ACTIVATIONS = ("relu", "leakyrelu", "prelu", "elu", "celu", "gelu", "selu", "swish", "mish", "tanh", "sigmoid")
ACTIVATION_KEYS = frozenset({"inplace", "negative_slope", "num_parameters", "init", "alpha"})
SWIN_PATCH = 2  # SwinUNETR's patch size; the input must be a multiple of patch_size ** 5


def is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high


def int_list(value: Any, lengths: range, low: int, high: int) -> bool:
    return isinstance(value, list) and len(value) in lengths and all(is_int(v, low, high) for v in value)


def _per_axis(value: Any, low: int, high: int, odd: bool = False) -> bool:
    """One int, or one per axis ([x, y, z])."""
    values = value if isinstance(value, list) and len(value) == 3 else [value]
    return all(is_int(v, low, high) and (v % 2 == 1 or not odd) for v in values)


def _axes(value: int | list[int]) -> list[int]:
    return list(value) if isinstance(value, list) else [value] * 3


def layer_spec(value: Any) -> tuple[str, dict[str, Any]] | None:
    """MONAI's layer spec: ``"relu"`` or ``["RELU", {"inplace": true}]`` → (lower-case name, arguments)."""
    if isinstance(value, str):
        return value.lower(), {}
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        return value[0].lower(), value[1]
    return None


def _layer_problem(name: str, value: Any, allowed: tuple[str, ...], keys: frozenset[str]) -> str | None:
    spec = layer_spec(value)
    if spec is None or spec[0] not in allowed:
        return f"{name} {value!r} (one of {', '.join(allowed)})"
    wrong = sorted(k for k, v in spec[1].items() if k not in keys or not (isinstance(v, bool) or is_number(v, -1e6, 1e6)))
    if wrong:
        return f"{name} {value!r} (its arguments may be {', '.join(sorted(keys))}, numbers or true/false)"
    if spec[1].get("num_parameters", 1) != 1:
        return f"{name} {value!r} (a PReLU shared by all channels: num_parameters 1)"
    return None


def common_problems(arguments: dict[str, Any]) -> Iterator[str]:
    """What every imported network must be: 3-D, one CT channel in, background and 1-255 organs out."""
    if arguments["spatial_dims"] != 3:
        yield f"spatial_dims {arguments['spatial_dims']!r} (this engine segments 3-D CT)"
    if arguments["in_channels"] != 1:
        yield f"in_channels {arguments['in_channels']!r} (one CT channel)"
    if not is_int(arguments["out_channels"], 2, MAX_CLASSES):
        yield f"out_channels {arguments['out_channels']!r} (2-{MAX_CLASSES})"


def _dropout_problems(name: str, arguments: dict[str, Any]) -> Iterator[str]:
    for key, off in LEFT_OUT[name].items():
        if arguments[key] != off and not is_number(arguments[key], 0.0, 1.0):
            yield f"{key} {arguments[key]!r} (a dropout rate in [0, 1])"


def _unet_problems(a: dict[str, Any]) -> Iterator[str]:
    if not int_list(a["channels"], range(2, 9), 1, 1024):
        yield f"channels {a['channels']!r} (2-8 channel counts of 1-1024)"
    if not int_list(a["strides"], range(len(a["channels"]) - 1, len(a["channels"])), 1, 4):
        yield f"strides {a['strides']!r} ({len(a['channels']) - 1} strides of 1-4, one per level below the first)"
    for key in ("kernel_size", "up_kernel_size"):
        if not _per_axis(a[key], 1, 7, odd=True):
            yield f"{key} {a[key]!r} (an odd size of 1-7, or one per axis)"
    if not is_int(a["num_res_units"], 0, 8):
        yield f"num_res_units {a['num_res_units']!r} (0-8)"
    if a["bias"] is not True:
        yield f"bias {a['bias']!r} (the layer that outputs the classes needs a bias for MiB's initialisation of new organs)"
    ordering = a["adn_ordering"]
    if not (isinstance(ordering, str) and 1 <= len(ordering) <= 3 and set(ordering.upper()) <= set("NDA") and len(set(ordering.upper())) == len(ordering)):
        yield f"adn_ordering {ordering!r} (a subset of N, D, A in some order)"
    problem = _layer_problem("act", a["act"], ACTIVATIONS, ACTIVATION_KEYS) or _layer_problem("norm", a["norm"], NORMS, NORM_KEYS)
    if problem:
        yield problem


def _dynunet_problems(a: dict[str, Any]) -> Iterator[str]:
    kernels, strides, up = a["kernel_size"], a["strides"], a["upsample_kernel_size"]
    if not (isinstance(kernels, list) and 3 <= len(kernels) <= 8 and all(_per_axis(k, 1, 7, odd=True) for k in kernels)):
        yield f"kernel_size {kernels!r} (3-8 levels of an odd size of 1-7, or one per axis)"
    if not (isinstance(strides, list) and len(strides) == len(kernels) and all(_per_axis(s, 1, 4) for s in strides)):
        yield f"strides {strides!r} ({len(kernels)} strides of 1-4, or one per axis, like kernel_size)"
    if _axes(strides[0]) != [1, 1, 1]:
        yield f"strides {strides!r} (the first must be 1: the engine needs the output on the input's grid)"
    if not (isinstance(up, list) and [_axes(u) for u in up] == [_axes(s) for s in strides[1:]]):
        yield f"upsample_kernel_size {up!r} (strides[1:], as MONAI's DynUNet expects)"
    filters = a["filters"]
    if filters is not None and not int_list(filters, range(len(strides), 64), 1, 1024):
        yield f"filters {filters!r} (at least {len(strides)} channel counts of 1-1024)"
    for key in ("deep_supervision", "res_block", "trans_bias"):
        if not isinstance(a[key], bool):
            yield f"{key} {a[key]!r} (true or false)"
    if not is_int(a["deep_supr_num"], 1, len(strides) - 2):
        yield f"deep_supr_num {a['deep_supr_num']!r} (1-{len(strides) - 2}: fewer than the upsampling levels)"
    problem = _layer_problem("act_name", a["act_name"], ACTIVATIONS, ACTIVATION_KEYS) or _layer_problem("norm_name", a["norm_name"], NORMS, NORM_KEYS)
    if problem:
        yield problem


def _swin_problems(a: dict[str, Any]) -> Iterator[str]:
    if a["patch_size"] != SWIN_PATCH:
        yield f"patch_size {a['patch_size']!r} ({SWIN_PATCH}: patches of 2 voxels, inputs in multiples of 32)"
    size = a["feature_size"]
    if not (is_int(size, 12, 384) and size % 12 == 0):
        yield f"feature_size {size!r} (a multiple of 12 up to 384)"
    if not int_list(a["depths"], range(4, 5), 1, 16):
        yield f"depths {a['depths']!r} (four block counts of 1-16)"
    heads = a["num_heads"]
    if not (int_list(heads, range(4, 5), 1, 64) and all(size * 2**i % h == 0 for i, h in enumerate(heads))):
        yield f"num_heads {heads!r} (four head counts that divide feature_size × 1, 2, 4, 8)"
    if not _per_axis(a["window_size"], 1, 16):
        yield f"window_size {a['window_size']!r} (1-16, or one per axis)"
    for key in ("qkv_bias", "normalize", "patch_norm", "use_v2"):
        if not isinstance(a[key], bool):
            yield f"{key} {a[key]!r} (true or false)"
    if not is_number(a["mlp_ratio"], 0.25, 16.0):
        yield f"mlp_ratio {a['mlp_ratio']!r} (0.25-16)"
    if a["downsample"] not in ("merging", "mergingv2"):
        yield f"downsample {a['downsample']!r} (merging or mergingv2)"
    problem = _layer_problem("norm_name", a["norm_name"], NORMS, NORM_KEYS)
    if problem:
        yield problem


PROBLEMS = {"UNet": _unet_problems, "DynUNet": _dynunet_problems, "SwinUNETR": _swin_problems}


def arguments_problem(name: str, arguments: dict[str, Any]) -> str | None:
    """The first argument of ``name`` (every key of ARGUMENTS[name], defaults filled in) that the engine cannot
    build as given, described; None when all fit."""
    checks = (common_problems(arguments), _dropout_problems(name, arguments), PROBLEMS[name](arguments))
    return next((problem for check in checks for problem in check), None)


def stored_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """What ``ciss.network.arguments`` keeps of the arguments read: neither those the engine sets nor dropout;
    DynUNet's ``filters`` resolved (MONAI's nnU-Net-like default when not given)."""
    stored = {key: arguments[key] for key in STORED[name]}
    if name == "DynUNet" and stored["filters"] is None:
        stored["filters"] = [min(2 ** (5 + i), 320) for i in range(len(arguments["strides"]))]
    elif name == "DynUNet":
        stored["filters"] = list(stored["filters"][: len(arguments["strides"])])
    return stored


def network_problem(network: dict[str, Any]) -> str | None:
    """A bundle's ``ciss.network`` for one of NETWORKS: exactly the stored arguments, literal, and buildable."""
    name, arguments = network.get("name"), network.get("arguments")
    if name not in NETWORKS:
        return f"network {name!r} is not one of {', '.join(NETWORKS)}"
    if not (isinstance(arguments, dict) and is_literal(arguments) and sorted(arguments) == sorted(STORED[name])):
        return f"the arguments of {name} are not literal values of exactly {', '.join(STORED[name])}"
    full = {**arguments, **LEFT_OUT[name], "spatial_dims": 3, "in_channels": network.get("in_channels"), "out_channels": network.get("out_channels")}
    problem = arguments_problem(name, full)
    return f"{name} with {problem}" if problem else None


def downsampling(network: dict[str, Any]) -> tuple[int, int, int]:
    """How much the network shrinks each axis: a patch must be a multiple of it."""
    name, arguments = network["name"], network["arguments"]
    if name == "SwinUNETR":
        return (arguments["patch_size"] ** 5,) * 3  # type: ignore[return-value]
    total = [1, 1, 1]
    for stride in arguments["strides"]:
        total = [t * s for t, s in zip(total, _axes(stride))]
    return total[0], total[1], total[2]


def describe(network: dict[str, Any]) -> str:
    """For the model card, e.g. ``MONAI DynUNet (4 levels, filters 32-256)``."""
    name, arguments = network["name"], network["arguments"]
    if name == "SwinUNETR":
        return f"MONAI SwinUNETR (feature_size {arguments['feature_size']}, depths {arguments['depths']})"
    widths = arguments["channels"] if name == "UNet" else arguments["filters"]
    return f"MONAI {name} ({len(widths)} levels, channels {widths[0]}-{widths[-1]})"
