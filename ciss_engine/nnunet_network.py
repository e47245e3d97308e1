"""An nnU-Net v2 network (PlainConvUNet or ResidualEncoderUNet from ``dynamic-network-architectures``) behind
the engine's network interface: logits and the feature tap, growable heads, the engine's axis order.

The network is built from the JSON a bundle records (``ciss.network`` with ``name: nnUNet``), never from a class
path it names: the architecture and each op (convolution, norm, dropout, non-linearity) are looked up in the
allow-lists of nnunet_architecture.py, and every other argument must be a literal the constructor accepts.
Feature tap: the norm output of the decoder's last convolution block, before its non-linearity, whose result
is the input of the final 1×1×1 convolution (the same place as SegResNet's tap, network.py).
Axes: the engine's network grid is RAS (x, y, z); nnU-Net runs on the reader's array order (z, y, x) permuted by
the plans' ``transpose_forward``, so ``axes[k]`` names the engine axis that is the model's axis k.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from typing import Any

import torch
from torch import nn

from .nnunet_architecture import OP_NAMES, downsampling, op_name

# nnunet_architecture.OP_NAMES → the op each name stands for.
OPS: dict[str, type[nn.Module] | None] = {
    "torch.nn.modules.conv.Conv3d": nn.Conv3d,
    "torch.nn.modules.instancenorm.InstanceNorm3d": nn.InstanceNorm3d, "torch.nn.modules.batchnorm.BatchNorm3d": nn.BatchNorm3d,
    "null": None, "torch.nn.modules.dropout.Dropout3d": nn.Dropout3d,
    "torch.nn.LeakyReLU": nn.LeakyReLU, "torch.nn.modules.activation.LeakyReLU": nn.LeakyReLU,
    "torch.nn.ReLU": nn.ReLU, "torch.nn.modules.activation.ReLU": nn.ReLU,
}


def _architecture_class(name: str) -> type[nn.Module]:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

    return {"PlainConvUNet": PlainConvUNet, "ResidualEncoderUNet": ResidualEncoderUNet}[name]


def constructor_problem(architecture: str, arch_kwargs: dict[str, Any]) -> str | None:
    """Arguments the architecture's constructor does not take (after nnunet_architecture.arch_kwargs_problem)."""
    accepted = set(inspect.signature(_architecture_class(architecture).__init__).parameters) - {"self"}
    unknown = sorted(set(arch_kwargs) - accepted)
    return f"{architecture} takes no argument {', '.join(unknown)}" if unknown else None


@dataclasses.dataclass(frozen=True)
class NnUNetNetworkConfig:
    """``ciss.network`` of a bundle imported from nnU-Net."""

    architecture: str
    arch_kwargs: dict[str, Any]
    out_channels: int
    axes: tuple[int, int, int] = (2, 1, 0)
    in_channels: int = 1
    name: str = "nnUNet"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "architecture": self.architecture, "arch_kwargs": self.arch_kwargs, "axes": list(self.axes),
                "in_channels": self.in_channels, "out_channels": self.out_channels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NnUNetNetworkConfig:
        return cls(architecture=data["architecture"], arch_kwargs=copy.deepcopy(data["arch_kwargs"]),
                   out_channels=int(data["out_channels"]), axes=tuple(int(a) for a in data["axes"]), in_channels=int(data["in_channels"]))  # type: ignore[arg-type]

    def downsampling(self) -> tuple[int, int, int]:
        return downsampling(self.arch_kwargs, self.axes)


def _built_kwargs(config: NnUNetNetworkConfig) -> dict[str, Any]:
    kwargs = dict(config.arch_kwargs)
    for key in OP_NAMES:
        kwargs[key] = OPS[op_name(kwargs, key)]
    # Not in place: the norm output is the feature tap and must survive the non-linearity.
    kwargs["nonlin_kwargs"] = {**(kwargs.get("nonlin_kwargs") or {}), "inplace": False}
    return kwargs


class NnUNetSegmentationNetwork(nn.Module):
    """nnU-Net's network, with deep supervision off, answering as network.SegmentationNetwork does."""

    def __init__(self, config: NnUNetNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = _architecture_class(config.architecture)(
            input_channels=config.in_channels, num_classes=config.out_channels, deep_supervision=False, **_built_kwargs(config),
        )
        self.model_axis_order = [0, 1, *(2 + a for a in config.axes)]
        self.engine_axis_order = [0, 1, *(2 + config.axes.index(a) for a in range(3))]

    @property
    def classifier(self) -> nn.Conv3d:
        return self.unet.decoder.seg_layers[-1]

    @property
    def feature_channels(self) -> int:
        return self.classifier.in_channels

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def _decode(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder to its last block's norm (the tap), then the non-linearity and the final convolution."""
        decoder = self.unet.decoder
        x = skips[-1]
        for s, (up, stage) in enumerate(zip(decoder.transpconvs, decoder.stages)):
            x = torch.cat((up(x), skips[-(s + 2)]), 1)
            if s < len(decoder.stages) - 1:
                x = stage(x)
        *first, last = decoder.stages[-1].convs
        for block in first:
            x = block(x)
        features = x
        for module in last.all_modules:  # conv, dropout, norm (the tap), non-linearity
            x = module(x)
            if module is last.norm:
                features = x
        return self.classifier(x), features

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and pre-activation features on the engine's axes (B, C|K, X, Y, Z)."""
        return self.forward_with_stages(image)[:2]

    def forward_with_stages(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Logits, features and the encoder's stages (nnU-Net's skips, finest first), all on the engine's axes."""
        skips = self.unet.encoder(image.permute(self.model_axis_order))
        logits, features = self._decode(skips)
        return logits.permute(self.engine_axis_order), features.permute(self.engine_axis_order), [s.permute(self.engine_axis_order) for s in skips]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(image)[0]

    def heads(self) -> list[nn.Conv3d]:
        """Every segmentation head (one per decoder stage: nnU-Net's deep supervision), the final one last."""
        return list(self.unet.decoder.seg_layers)

    def set_heads(self, heads: list[nn.Conv3d]) -> None:
        self.unet.decoder.seg_layers = nn.ModuleList(heads)
        self.unet.decoder.num_classes = heads[-1].out_channels
        self.config = dataclasses.replace(self.config, out_channels=heads[-1].out_channels)


def nnunet_weights_to_engine(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """nnU-Net's ``network_weights`` → this wrapper's state dict (compiled or DDP prefixes dropped)."""
    renamed = {}
    for key, value in weights.items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        renamed[f"unet.{key}"] = value
    return renamed


def engine_weights_to_nnunet(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix("unet."): value for key, value in state_dict.items()}
