"""The segmentation network: MONAI SegResNet with a feature tap and a growable 1×1×1 classifier.

PCDD needs the K-channel feature map that feeds the classifier (METHOD.md §2), so the network is
split into ``backbone`` (SegResNet without its final block), ``feature_head`` (norm + activation:
SegResNet's own final block minus its convolution) and ``classifier`` (the 1×1×1 convolution).
The feature tap is the normalised decoder output *before* the activation (signed, so cosines between
organs can be negative); the classifier sees its ReLU, :func:`post_activation`, which is exact per voxel.
Only whitelisted architectures are built from a bundle's JSON config: a bundle never names a class
to instantiate.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import TYPE_CHECKING, Any, Union

import torch
from monai.networks.nets import SegResNet
from torch import nn

from .errors import BundleError

from .monai_zoo_architecture import NETWORKS as MONAI_ZOO_NETWORKS

if TYPE_CHECKING:
    from .monai_zoo_network import MonaiZooNetworkConfig, MonaiZooSegmentationNetwork
    from .nnunet_network import NnUNetNetworkConfig, NnUNetSegmentationNetwork

SUPPORTED_NETWORKS = ("SegResNet", "nnUNet", *MONAI_ZOO_NETWORKS)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Network settings stored in the bundle (``metadata.json`` → ``ciss.network``)."""

    name: str = "SegResNet"
    init_filters: int = 16
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    in_channels: int = 1
    out_channels: int = 5

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "blocks_down": list(self.blocks_down), "blocks_up": list(self.blocks_up)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfig:
        if data.get("name") != "SegResNet":
            raise BundleError(f"unsupported network {data.get('name')!r}", f"this engine builds only {', '.join(SUPPORTED_NETWORKS)}; the bundle comes from another tool or version")
        try:
            return cls(
                name=data["name"],
                init_filters=int(data["init_filters"]),
                blocks_down=tuple(int(b) for b in data["blocks_down"]),
                blocks_up=tuple(int(b) for b in data["blocks_up"]),
                in_channels=int(data["in_channels"]),
                out_channels=int(data["out_channels"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"invalid network settings: {error}", "the bundle's configs/metadata.json is damaged; restore it from a backup or retrain") from error


AnyNetworkConfig = Union["NetworkConfig", "NnUNetNetworkConfig", "MonaiZooNetworkConfig"]
AnyNetwork = Union["SegmentationNetwork", "NnUNetSegmentationNetwork", "MonaiZooSegmentationNetwork"]


def check_network_config_or_raise(config: NetworkConfig) -> None:
    if config.init_filters % 8:
        raise BundleError(f"init_filters must be a multiple of 8 (group norm of 8 groups), got {config.init_filters}", "use 8, 16, 32…")


class LayoutFreeGroupNorm(nn.GroupNorm):
    """GroupNorm computed in PyTorch's default layout, whatever its input's.

    For channels-last input PyTorch's CPU kernel sums less precisely: a whole-network gradient of the engine's network
    came out 9e-4 (relative) from its float64 value, some GroupNorm parameters' 1e-2, against 1.5e-6 in the default
    layout; with this norm in a channels-last network, 6e-5, at the same speed (benchmarks/RESULTS.md (bd)).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous():
            return super().forward(x)
        return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last_3d)


def _use_layout_free_group_norms(module: nn.Module) -> None:
    """Swap every nn.GroupNorm below ``module`` for a LayoutFreeGroupNorm (same parameters, same state-dict keys)."""
    for name, child in module.named_children():
        if type(child) is nn.GroupNorm:
            norm = LayoutFreeGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
            norm.load_state_dict(child.state_dict())
            setattr(module, name, norm)
        else:
            _use_layout_free_group_norms(child)


def placed(network: AnyNetwork, device: torch.device) -> AnyNetwork:
    """``network`` on ``device``, laid out as that device's convolutions run fastest.

    The engine's own network on the CPU: channels-last weights (``torch.channels_last_3d``), so oneDNN keeps the feature
    maps channels-last through forward and backward; one training iteration (8 filters, 48³, batch 2) took 0.245 s
    against 0.369 s (2-core AMD EPYC, benchmarks/RESULTS.md (bd)). Only the layout changes: a bundle's weights are saved
    contiguous either way. Imported networks (nnU-Net, MONAI bundles) and CUDA keep PyTorch's default layout: an import
    is checked against its source tool's outputs, and neither was measured. Place a network before
    DistributedDataParallel wraps it: its gradient buckets copy the parameters' layout.
    """
    channels_last = device.type == "cpu" and isinstance(network, SegmentationNetwork)
    return network.to(device, memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


class SegmentationNetwork(nn.Module):
    """SegResNet whose forward can also return the features F that feed the classifier.

    Shapes: image (B, 1, D, H, W) → logits (B, C, D, H, W), pre-activation features (B, K, D, H, W) with
    K = ``init_filters``; D, H, W must be divisible by 2**(len(blocks_down) - 1).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        check_network_config_or_raise(config)
        self.config = config
        self.backbone = SegResNet(
            spatial_dims=3,
            init_filters=config.init_filters,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            blocks_down=config.blocks_down,
            blocks_up=config.blocks_up,
            use_conv_final=False,
        )
        # SegResNet builds its final block even when unused; drop it so the state dict holds no
        # weights that depend on the number of classes outside ``classifier``.
        self.backbone.conv_final = None
        # Not in place: the pre-activation map is the feature tap and must survive the ReLU.
        self.feature_head = nn.Sequential(nn.GroupNorm(8, config.init_filters), nn.ReLU())
        _use_layout_free_group_norms(self)
        self.classifier = nn.Conv3d(config.init_filters, config.out_channels, kernel_size=1, bias=True)

    @property
    def feature_channels(self) -> int:
        return self.config.init_filters

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def encode_decode(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Decoder output and the encoder stages (coarsest last), for feature-level losses."""
        x, stages = self.backbone.encode(image)
        skips = list(reversed(stages))
        return self.backbone.decode(x, skips), stages

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the pre-activation features F (the classifier reads ``post_activation(F)``)."""
        return self.forward_with_stages(image)[:2]

    def forward_with_stages(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Logits, features F and the encoder stages (finest first, the bottleneck last): what stage-wise
        feature losses (CiNuSeg's class anchors, Dual-Alignment's bottleneck) read, from the same single pass."""
        decoded, stages = self.encode_decode(image)
        norm, activation = self.feature_head
        features = norm(decoded)
        return self.classifier(activation(features)), features, stages

    def bottleneck(self, image: torch.Tensor) -> torch.Tensor:
        """The coarsest encoder stage alone (the replay buffer's vectors), without running the decoder."""
        return self.backbone.encode(image)[0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_with_features(image)[0]

    def heads(self) -> list[nn.Conv3d]:
        """The segmentation heads: SegResNet has one."""
        return [self.classifier]

    def set_heads(self, heads: list[nn.Conv3d]) -> None:
        (self.classifier,) = heads
        self.config = dataclasses.replace(self.config, out_channels=self.classifier.out_channels)


def post_activation(features: torch.Tensor) -> torch.Tensor:
    """What the classifier reads: the ReLU of the feature tap (non-negative, cosines in [0, 1])."""
    return torch.relu(features)


def network_config_from_json(data: dict[str, Any]) -> AnyNetworkConfig:
    """A bundle's ``ciss.network``: SegResNet (trained here, MONAI imports), an imported nnU-Net, or an imported
    MONAI UNet, DynUNet or SwinUNETR."""
    if data.get("name") in MONAI_ZOO_NETWORKS:
        from .monai_zoo_architecture import network_problem
        from .monai_zoo_network import MonaiZooNetworkConfig

        problem = network_problem(data)
        if problem:
            raise BundleError(f"unsupported {data['name']} network: {problem}", "the bundle comes from another tool or version; import the model again with `ciss import`")
        return MonaiZooNetworkConfig.from_json(data)
    if data.get("name") == "nnUNet":
        from .nnunet_architecture import arch_kwargs_problem, axes_problem
        from .nnunet_network import NnUNetNetworkConfig, constructor_problem

        problem = arch_kwargs_problem(data.get("architecture"), data.get("arch_kwargs")) or axes_problem(data.get("axes"))
        problem = problem or constructor_problem(data["architecture"], data["arch_kwargs"])
        if problem:
            raise BundleError(f"unsupported nnU-Net network: {problem}", "the bundle comes from another tool or version; import the model again with `ciss import`")
        try:
            return NnUNetNetworkConfig.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"invalid network settings: {error}", "the bundle's configs/metadata.json is damaged; restore it from a backup or import again") from error
    return NetworkConfig.from_json(data)


def build_network(config: AnyNetworkConfig) -> AnyNetwork:
    if isinstance(config, NetworkConfig):
        return SegmentationNetwork(config)
    if config.name in MONAI_ZOO_NETWORKS:
        from .monai_zoo_network import MonaiZooSegmentationNetwork

        return MonaiZooSegmentationNetwork(config)  # type: ignore[arg-type]
    from .nnunet_network import NnUNetSegmentationNetwork

    return NnUNetSegmentationNetwork(config)  # type: ignore[arg-type]


Conv = Union[nn.Conv3d, nn.ConvTranspose3d]


def widened(old: Conv, num_new: int, background_shift: float) -> Conv:
    """``old`` (a convolution or transposed convolution of any kernel) with ``num_new`` more output channels that
    copy channel 0 (the background), whose bias and theirs are lowered by ``background_shift``."""
    if old.groups != 1 or old.bias is None:
        raise ValueError(f"cannot widen {old}: grouped or without bias")
    axis = 1 if isinstance(old, nn.ConvTranspose3d) else 0  # where the output channels are in the weight
    grown = copy.deepcopy(old)
    with torch.no_grad():
        weight = torch.cat([old.weight, old.weight.narrow(axis, 0, 1).repeat_interleave(num_new, axis)], axis)
        bias = torch.cat([old.bias, old.bias[:1].expand(num_new)])
        bias[0] -= background_shift
        bias[old.out_channels :] -= background_shift
    grown.weight = nn.Parameter(weight, requires_grad=old.weight.requires_grad)
    grown.bias = nn.Parameter(bias, requires_grad=old.bias.requires_grad)
    grown.out_channels = old.out_channels + num_new
    return grown


def grown_head(old: nn.Module, num_new: int) -> nn.Module:
    """``old`` with ``num_new`` more output classes, initialised as MiB does (METHOD.md §2).

    New-class weights copy the background weights; the background bias and the new biases become
    b₀ − log(|N| + 1), so the old background probability is split evenly over background and the new
    classes while every old-class probability stays exactly as it was: wherever the old model chose an
    old organ, the grown model still does. A head of several layers (monai_zoo_network.ResidualClassBlock)
    grows itself with its ``grown(num_new)``, to the same effect.
    """
    grow = getattr(old, "grown", None)
    if callable(grow):
        return grow(num_new)
    return widened(old, num_new, math.log(num_new + 1))  # type: ignore[arg-type]


def grow_classifier(network: AnyNetwork, num_new: int) -> AnyNetwork:
    """Add ``num_new`` output classes to every segmentation head of ``network`` (grown_head), in place."""
    if num_new < 1:
        raise ValueError(f"num_new must be >= 1, got {num_new}")
    network.set_heads([grown_head(head, num_new) for head in network.heads()])
    return network
