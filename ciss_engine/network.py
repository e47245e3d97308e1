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

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Union

import torch
from monai.networks.nets import SegResNet
from torch import nn

from .errors import BundleError

if TYPE_CHECKING:
    from .nnunet_network import NnUNetNetworkConfig, NnUNetSegmentationNetwork

SUPPORTED_NETWORKS = ("SegResNet", "nnUNet")


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


AnyNetworkConfig = Union["NetworkConfig", "NnUNetNetworkConfig"]
AnyNetwork = Union["SegmentationNetwork", "NnUNetSegmentationNetwork"]


def check_network_config_or_raise(config: NetworkConfig) -> None:
    if config.init_filters % 8:
        raise BundleError(f"init_filters must be a multiple of 8 (group norm of 8 groups), got {config.init_filters}", "use 8, 16, 32…")


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
        decoded, _ = self.encode_decode(image)
        norm, activation = self.feature_head
        features = norm(decoded)
        return self.classifier(activation(features)), features

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
    """A bundle's ``ciss.network``: SegResNet (trained here, MONAI imports) or an imported nnU-Net."""
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
    from .nnunet_network import NnUNetSegmentationNetwork

    return NnUNetSegmentationNetwork(config)


def grown_head(old: nn.Conv3d, num_new: int) -> nn.Conv3d:
    """``old`` with ``num_new`` more output classes, initialised as MiB does (METHOD.md §2).

    New-class weights copy the background weights; the background bias and the new biases become
    b₀ − log(|N| + 1), so the old background probability is split evenly over background and the new
    classes while every old-class probability stays exactly as it was: wherever the old model chose an
    old organ, the grown model still does.
    """
    grown = nn.Conv3d(old.in_channels, old.out_channels + num_new, kernel_size=1, bias=True).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        grown.weight[: old.out_channels] = old.weight
        grown.weight[old.out_channels :] = old.weight[0:1].expand(num_new, *old.weight.shape[1:])
        background_bias = old.bias[0] - math.log(num_new + 1)
        grown.bias[: old.out_channels] = old.bias
        grown.bias[0] = background_bias
        grown.bias[old.out_channels :] = background_bias
    return grown


def grow_classifier(network: AnyNetwork, num_new: int) -> AnyNetwork:
    """Add ``num_new`` output classes to every segmentation head of ``network`` (grown_head), in place."""
    if num_new < 1:
        raise ValueError(f"num_new must be >= 1, got {num_new}")
    network.set_heads([grown_head(head, num_new) for head in network.heads()])
    return network
