"""What an imported nnU-Net network may be, checked as plain JSON (no torch: ``bundle_schema`` uses it when
``ciss info`` reads a bundle, the importer when it reads ``plans.json``).

An nnU-Net plan names its architecture and ops by Python class path; the engine resolves only the names
listed here (nnunet_network.py maps them to torch classes), and every other argument must be a literal.
"""
from __future__ import annotations

from typing import Any

ARCHITECTURES = ("PlainConvUNet", "ResidualEncoderUNet")
# Op arguments → the class paths nnU-Net writes in plans.json that the engine accepts ("null": none).
OP_NAMES: dict[str, tuple[str, ...]] = {
    "conv_op": ("torch.nn.modules.conv.Conv3d",),
    "norm_op": ("torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.modules.batchnorm.BatchNorm3d"),
    "dropout_op": ("null", "torch.nn.modules.dropout.Dropout3d"),
    "nonlin": ("torch.nn.LeakyReLU", "torch.nn.modules.activation.LeakyReLU", "torch.nn.ReLU", "torch.nn.modules.activation.ReLU"),
}
# Arguments the engine sets itself when it builds the network.
RESERVED = ("input_channels", "num_classes", "deep_supervision")


def is_literal(value: Any) -> bool:
    if isinstance(value, list):
        return all(is_literal(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_literal(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def op_name(arch_kwargs: dict[str, Any], key: str) -> str:
    value = arch_kwargs.get(key)
    return "null" if value is None else str(value)


def arch_kwargs_problem(architecture: Any, arch_kwargs: Any) -> str | None:
    """Why ``arch_kwargs`` cannot build ``architecture`` safely, or None."""
    if architecture not in ARCHITECTURES:
        return f"network {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
    if not isinstance(arch_kwargs, dict) or not is_literal(arch_kwargs):
        return "the architecture's arguments are not literal values"
    for key, allowed in OP_NAMES.items():
        if op_name(arch_kwargs, key) not in allowed:
            return f"{key} {arch_kwargs.get(key)!r} is not one of {', '.join(n for n in allowed if n != 'null')}"
    if arch_kwargs.get("nonlin_first"):
        return "nonlin_first networks are not supported (the feature tap is the last norm's output)"
    reserved = sorted(set(arch_kwargs) & set(RESERVED))
    if reserved:
        return f"the engine sets {', '.join(reserved)} itself"
    strides = arch_kwargs.get("strides")
    if not (isinstance(strides, list) and len(strides) >= 2 and all(
            isinstance(s, list) and len(s) == 3 and all(isinstance(f, int) and 1 <= f <= 4 for f in s) for s in strides)):
        return "strides are not one [a, b, c] triple of 1-4 per stage (3D networks only)"
    return None


def axes_problem(axes: Any) -> str | None:
    return None if isinstance(axes, list) and sorted(axes) == [0, 1, 2] else f"axes {axes!r} are not a permutation of 0, 1, 2"


def downsampling(arch_kwargs: dict[str, Any], axes: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    """How much the network shrinks each engine axis: a patch must be a multiple of it."""
    total = [1, 1, 1]
    for stride in arch_kwargs["strides"]:
        for model_axis, factor in enumerate(stride):
            total[axes[model_axis]] *= int(factor)
    return total[0], total[1], total[2]


def describe(network: dict[str, Any]) -> str:
    """For the model card, e.g. ``nnU-Net PlainConvUNet (4 stages, features 32-256)``."""
    features = network["arch_kwargs"].get("features_per_stage", [])
    width = f", features {features[0]}-{features[-1]}" if features else ""
    return f"nnU-Net {network['architecture']} ({len(network['arch_kwargs']['strides'])} stages{width})"
