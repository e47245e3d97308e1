"""A MONAI UNet, DynUNet or SwinUNETR imported from a MONAI bundle, behind the engine's network interface:
logits and the feature tap, growable heads.

The network is MONAI's own class (monai.networks.nets), built from the arguments a bundle records
(``ciss.network`` with ``name`` UNet, DynUNet or SwinUNETR and literal ``arguments``, checked against the
allow-lists of monai_zoo_architecture.py), never from code or a class path the bundle names. Its weights keep
MONAI's names under ``net.``. Dropout is left out (it does nothing at inference; ``ciss learn`` trains without it).

The feature tap is the input of the network's final layer, the one that outputs the class channels; growing the
model (network.grow_classifier) widens that layer with MiB's initialisation, so old-class logits stay as they were.

- DynUNet: the input of ``output_block`` (UnetOutBlock: a 1×1×1 convolution), the last up-block's output at the
  input's resolution (``strides[0]`` must be 1), ``filters[0]`` channels. With deep supervision the
  ``deep_supervision_heads`` (1×1×1 convolutions on coarser decoder levels) are widened the same way and kept in
  the bundle, but the network returns the final output only, in a step as at inference.
- SwinUNETR: the input of ``out`` (UnetOutBlock), ``decoder1``'s output at the input's resolution, ``feature_size``
  channels.
- UNet: MONAI's UNet has no 1×1×1 classifier. Its top level is ``Sequential(down, SkipConnection(…), up)`` and the
  top ``up`` layer outputs the classes: a transposed convolution with stride ``strides[0]`` (kernel
  ``up_kernel_size``) when ``num_res_units`` is 0; with residual units, that transposed convolution followed by its
  norm, dropout and activation and by a ResidualUnit whose one convolution adds to its input (x + conv(x)). Every
  tensor after the transposed convolution has one channel per class, so the only place with a fixed number of
  channels, whatever the number of organs, is the input of that top ``up`` layer: the concatenation of the top
  encoder output and the decoder below (``2 × channels[0]``, or ``channels[0] + channels[1]`` with two levels). That
  is the tap. It lies on a grid ``strides[0]`` times coarser than the logits (MONAI's first encoder convolution is
  already strided), so the features the engine gets are that map repeated to the logits' grid (nearest neighbour:
  voxel i of the logits reads tap voxel ⌊i / strides[0]⌋, the one whose kernel centre lands on it). The head grows:
  without residual units, the transposed convolution's new output channels copy the background's weights with its
  bias − log(n_new + 1) (network.widened, the same rule as a 1×1×1 classifier); with residual units,
  ResidualClassBlock widens the transposed convolution (copies of the background channel), the per-channel norm
  (instance or batch, as allowed) and the residual convolution (new outputs copy the background's, bias
  − log(n_new + 1); new inputs get zero weights, so old classes never read them), which gives exactly MiB's
  initialisation through the whole block. A GroupNorm or LayerNorm there would mix class channels and cannot be
  grown this way: the allow-list admits instance and batch norms only.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from monai.networks.layers import SkipConnection
from torch import nn
from torch.nn import functional

from .monai_zoo_architecture import downsampling
from .network import widened


def monai_class(name: str) -> type[nn.Module]:
    from monai.networks.nets import DynUNet, SwinUNETR, UNet

    return {"UNet": UNet, "DynUNet": DynUNet, "SwinUNETR": SwinUNETR}[name]


@dataclasses.dataclass(frozen=True)
class MonaiZooNetworkConfig:
    """``ciss.network`` of a bundle imported with a MONAI UNet, DynUNet or SwinUNETR."""

    name: str
    arguments: dict[str, Any]
    out_channels: int
    in_channels: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": copy.deepcopy(self.arguments), "in_channels": self.in_channels, "out_channels": self.out_channels}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MonaiZooNetworkConfig:
        return cls(name=data["name"], arguments=copy.deepcopy(data["arguments"]), out_channels=int(data["out_channels"]), in_channels=int(data["in_channels"]))

    def downsampling(self) -> tuple[int, int, int]:
        return downsampling(self.to_json())


def monai_network(config: MonaiZooNetworkConfig) -> nn.Module:
    """MONAI's own class with the config's arguments (the engine's network inside, and the reference at import)."""
    arguments = {**copy.deepcopy(config.arguments), "spatial_dims": 3, "in_channels": config.in_channels, "out_channels": config.out_channels}
    return monai_class(config.name)(**arguments)


def _widen_per_channel(module: nn.Module, channels: int, num_new: int) -> None:
    """A norm's (or activation's) per-channel parameters and buffers, with ``num_new`` copies of channel 0 appended."""
    for store in (module._parameters, module._buffers):
        for name, tensor in list(store.items()):
            if tensor is not None and tensor.dim() == 1 and tensor.shape[0] == channels:
                grown = torch.cat([tensor.detach(), tensor.detach()[:1].expand(num_new)])
                store[name] = nn.Parameter(grown, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else grown
    if hasattr(module, "num_features"):
        module.num_features = channels + num_new


class ResidualClassBlock(nn.Sequential):
    """MONAI UNet's top ``up`` layer with residual units, as a head that widens itself (module docstring).

    Children ``0`` (Convolution: transposed convolution, then norm/dropout/activation) and ``1`` (ResidualUnit of one
    convolution, identity residual), named as in MONAI so that the weights keep their names."""

    @property
    def in_channels(self) -> int:
        return self[0].conv.in_channels

    @property
    def out_channels(self) -> int:
        return self[0].conv.out_channels

    def grown(self, num_new: int) -> ResidualClassBlock:
        up, unit = copy.deepcopy(self[0]), copy.deepcopy(self[1])
        channels = self.out_channels
        if not isinstance(unit.residual, nn.Identity) or len(unit.conv) != 1:
            raise ValueError("the residual unit of MONAI UNet's top layer is expected to be one convolution with an identity residual")
        up.conv = widened(self[0].conv, num_new, 0.0)  # new channels: the background's, unchanged
        for layer in getattr(up, "adn", nn.Sequential()).children():
            _widen_per_channel(layer, channels, num_new)
        conv = widened(unit.conv[0].conv, num_new, math.log(num_new + 1))
        with torch.no_grad():  # new inputs (copies of the background channel) unread: old logits stay as they were
            zeros = conv.weight.new_zeros((conv.weight.shape[0], num_new, *conv.weight.shape[2:]))
            conv.weight = nn.Parameter(torch.cat([conv.weight, zeros], 1), requires_grad=conv.weight.requires_grad)
        conv.in_channels = channels + num_new
        unit.conv[0].conv = conv
        unit.in_channels = unit.out_channels = channels + num_new
        return ResidualClassBlock(up, unit)


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Every reference to ``old`` inside ``root`` (DynUNet holds its deep-supervision heads twice) made ``new``."""
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if child is old:
                setattr(module, name, new)


class MonaiZooSegmentationNetwork(nn.Module):
    """MONAI's network answering as network.SegmentationNetwork does (module docstring)."""

    def __init__(self, config: MonaiZooNetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.net = monai_network(config)
        if config.name == "DynUNet":  # deep supervision off: its heads stay (and grow) but never run
            from monai.networks.nets.dynunet import DynUNetSkipLayer

            self.net.deep_supervision = False  # the forward returns the final output only
            for layer in self.net.modules():
                if isinstance(layer, DynUNetSkipLayer):
                    layer.heads = None  # the skip layers leave the heads' outputs uncomputed
        if config.name == "UNet" and config.arguments["num_res_units"] > 0:
            self.net.model[2] = ResidualClassBlock(*self.net.model[2])

    def _final_layer(self) -> nn.Module:
        """The layer whose input is the feature tap and whose output is the logits."""
        if self.config.name == "UNet":
            return self.net.model[2]
        return self.net.output_block if self.config.name == "DynUNet" else self.net.out

    @property
    def feature_channels(self) -> int:
        return self.heads()[0].in_channels

    @property
    def num_classes(self) -> int:
        return self.config.out_channels

    def _encoder_stages(self) -> list[nn.Module]:
        """The encoder's blocks, finest first, the bottleneck last: whose outputs stage-wise losses read."""
        if self.config.name == "SwinUNETR":
            return [self.net.encoder1, self.net.encoder2, self.net.encoder3, self.net.encoder4, self.net.encoder10]
        if self.config.name == "DynUNet":
            return [self.net.input_block, *self.net.downsamples, self.net.bottleneck]
        stages, block = [], self.net.model  # UNet: Sequential(down, SkipConnection(deeper), up), nested
        while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
            stages.append(block[0])
            block = block[1].submodule
        return [*stages, block]

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the tap (the final layer's input), both on the logits' grid (B, C|K, X, Y, Z)."""
        return self._forward(image, with_stages=False)[:2]

    def forward_with_stages(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Logits, the tap and the encoder stages' outputs (finest first), from one pass."""
        return self._forward(image, with_stages=True)

    def _forward(self, image: torch.Tensor, *, with_stages: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        tapped: list[torch.Tensor] = []
        stages: dict[int, torch.Tensor] = {}
        handles = [self._final_layer().register_forward_pre_hook(lambda _layer, inputs: tapped.append(inputs[0]))]
        if with_stages:
            handles += [module.register_forward_hook(lambda _layer, _inputs, output, at=index: stages.__setitem__(at, output))
                        for index, module in enumerate(self._encoder_stages())]
        try:
            logits = self.net(image)
        finally:
            for handle in handles:
                handle.remove()
        features = tapped[-1]
        if features.shape[2:] != logits.shape[2:]:  # UNet: the tap is strides[0] times coarser
            features = functional.interpolate(features, size=logits.shape[2:], mode="nearest")
        return logits, features, [stages[index] for index in sorted(stages)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def heads(self) -> list[nn.Module]:
        """The layers that output the classes, the final one first (then DynUNet's deep-supervision heads)."""
        if self.config.name == "UNet":
            final = self.net.model[2]
            return [final if isinstance(final, ResidualClassBlock) else final.conv]
        if self.config.name == "SwinUNETR":
            return [self.net.out.conv.conv]
        return [self.net.output_block.conv.conv, *(head.conv.conv for head in getattr(self.net, "deep_supervision_heads", []))]

    def set_heads(self, heads: list[nn.Module]) -> None:
        for old, new in zip(self.heads(), heads):
            _replace(self.net, old, new)
        self.config = dataclasses.replace(self.config, out_channels=heads[0].out_channels)


def monai_weights_to_engine(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A MONAI state dict → this wrapper's (MONAI's names under ``net.``)."""
    return {f"net.{key}": value for key, value in state.items()}
