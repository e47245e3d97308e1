"""A faster learning rate for the new organs' output channels only.

The grown classifier starts each new organ as a copy of the background (network.grown_head); within a
400-iteration step on the real CTs the thin and small organs (esophagus, pancreas) still lost to the background
everywhere (mean p(esophagus) 0.20 on its own voxels), while a higher step learning rate for the whole network
collapsed the old organs (0.035 and 0.05; benchmarks/RESULTS.md (y)). Scaling only the new channels' gradients
moves their separating planes faster and leaves every old organ's weights, and the shared features, at the step's
rate. SGD's update is linear in the gradient, so this is a learning rate × ``scale`` for those rows.
"""
from __future__ import annotations

import torch
from torch import nn

from ..network import AnyNetwork


def new_class_convolutions(network: AnyNetwork) -> list[nn.Conv3d | nn.ConvTranspose3d]:
    """Every convolution of the segmentation heads whose outputs are the classes (a head of several layers,
    MONAI UNet's imported one, has two)."""
    classes = network.heads()[0].out_channels
    return [module for head in network.heads() for module in head.modules()
            if isinstance(module, nn.Conv3d | nn.ConvTranspose3d) and module.out_channels == classes]


def scale_new_class_gradients(network: AnyNetwork, num_old: int, scale: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Multiply the gradient of each new class's output channel (indices ≥ 1 + ``num_old``) by ``scale`` in every
    class convolution of the heads; the handles remove the hooks. ``scale`` 1 registers none."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if scale == 1:
        return []
    handles = []
    for conv in new_class_convolutions(network):
        output_axis = 1 if isinstance(conv, nn.ConvTranspose3d) else 0
        for parameter, axis in ((conv.weight, output_axis), (conv.bias, 0)):
            if parameter is None or not parameter.requires_grad:
                continue
            factor = torch.ones(parameter.shape[axis], dtype=parameter.dtype, device=parameter.device)
            factor[1 + num_old :] = scale
            shape = [1] * parameter.dim()
            shape[axis] = -1
            factor = factor.view(shape)
            handles.append(parameter.register_hook(lambda gradient, factor=factor: gradient * factor.to(gradient.dtype)))
    return handles
