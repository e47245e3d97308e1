"""A MONAI bundle's network: its ``network_def`` checked against what this engine builds, its weights read as
tensors only and mapped onto the engine's network, and the result checked against MONAI's own class with the
source weights.

SegResNet becomes :class:`~ciss_engine.network.SegmentationNetwork`. MONAI's SegResNet ends in ``conv_final`` =
Sequential(GroupNorm, ReLU, Convolution(conv=Conv3d 1×1×1)); ours splits that block into ``feature_head`` (the
norm and ReLU, whose input the prototypes tap) and ``classifier`` (the 1×1×1 convolution), so the weights map by
name: ``conv_final.0.*`` → ``feature_head.0.*``, ``conv_final.2.conv.*`` → ``classifier.*``, everything else →
``backbone.*``. UNet, DynUNet and SwinUNETR become :class:`~ciss_engine.monai_zoo_network.MonaiZooSegmentationNetwork`
(MONAI's own class inside, its weights under ``net.``; the arguments read and checked are listed in
monai_zoo_architecture.py).
"""
from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from ..bundle_schema import patch_multiples
from ..errors import InputError
from ..monai_zoo_architecture import ARGUMENTS as ZOO_ARGUMENTS
from ..monai_zoo_architecture import IGNORED, LEFT_OUT, arguments_problem, common_problems, int_list, is_int, layer_spec, stored_arguments
from ..monai_zoo_architecture import NETWORKS as ZOO_NETWORKS
from ..network import AnyNetwork, AnyNetworkConfig, NetworkConfig, build_network
from .weights import fit_problem, unsafe_globals
from .monai_config import ConfigReader, target_name

SEGRESNET = "SegResNet"
IMPORTED = (SEGRESNET, *ZOO_NETWORKS)
# Networks of the MONAI Model Zoo that this engine does not build yet: named, so the refusal says "not yet".
NOT_SUPPORTED_YET = (
    "BasicUNet", "UNETR", "SegResNetDS", "SegResNetDS2", "SegResNetVAE", "AttentionUnet",
    "VNet", "DiNTS", "TopologyInstance", "HighResNet", "FlexibleUNet", "BasicUNetPlusPlus", "UNet3D",
)
SUPPORTED_HINT = f"CISSegmentation imports MONAI's {', '.join(IMPORTED)} (docs/import.md)"
# SegResNet's arguments the importer reads, with MONAI's defaults; the others change nothing at inference.
SEGRESNET_ARGUMENTS: dict[str, Any] = {
    "spatial_dims": 3, "init_filters": 8, "in_channels": 1, "out_channels": 2, "dropout_prob": None,
    "act": ["RELU", {"inplace": True}], "norm": ["GROUP", {"num_groups": 8}], "norm_name": "", "num_groups": 8,
    "use_conv_final": True, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "upsample_mode": "nontrainable",
}
GROUP_NORM_DEFAULTS = {"eps": 1e-5, "affine": True}
WEIGHTS_HINT = (
    "a MONAI bundle keeps a plain state dict in models/model.pt; this checkpoint also holds Python objects, which could run code "
    "when loaded, so it is never unpickled. If you trust its source, re-save its weights alone: "
    "torch.save(checkpoint['model'] if 'model' in checkpoint else checkpoint, 'models/model.pt') on a machine where loading it is safe"
)


@dataclasses.dataclass(frozen=True)
class SourceNetwork:
    """The source network as this engine builds it, and what of its definition was left out (for the history)."""

    config: AnyNetworkConfig
    notes: tuple[str, ...]


def _norm_problem(arguments: dict[str, Any]) -> str | None:
    if arguments["norm_name"]:
        if str(arguments["norm_name"]).lower() != "group" or arguments["num_groups"] != 8:
            return f"norm_name {arguments['norm_name']!r} with num_groups {arguments['num_groups']!r}"
        return None
    spec = layer_spec(arguments["norm"])
    if spec is None or spec[0] != "group" or spec[1].get("num_groups") != 8:
        return f"norm {arguments['norm']!r}"
    extra = {k: v for k, v in spec[1].items() if k != "num_groups" and GROUP_NORM_DEFAULTS.get(k, object()) != v}
    return f"norm {arguments['norm']!r}" if extra else None


def _segresnet_problem(arguments: dict[str, Any]) -> str | None:
    """The first argument of a SegResNet this engine cannot build as given, described; None when all fit."""
    common = next(common_problems(arguments), None)
    if common:
        return common
    down, up, act = arguments["blocks_down"], arguments["blocks_up"], layer_spec(arguments["act"])
    levels = len(down) if isinstance(down, list) else 0
    filters = arguments["init_filters"]
    checks = [
        (is_int(filters, 8, 512) and filters % 8 == 0, f"init_filters {filters!r} (a multiple of 8 up to 512: GroupNorm of 8 groups)"),
        (int_list(down, range(2, 7), 1, 16), f"blocks_down {down!r} (2-6 levels of 1-16 blocks)"),
        (int_list(up, range(levels - 1, levels), 1, 16), f"blocks_up {up!r} (one level fewer than blocks_down)"),
        (act is not None and act[0] == "relu" and set(act[1]) <= {"inplace"}, f"act {arguments['act']!r} (this engine builds ReLU)"),
        (arguments["use_conv_final"] is True, "use_conv_final false (the bundle has no classifier)"),
        (str(arguments["upsample_mode"]).lower() == "nontrainable", f"upsample_mode {arguments['upsample_mode']!r} (this engine builds nontrainable upsampling)"),
    ]
    problem = next((what for fits, what in checks if not fits), None)
    norm = _norm_problem(arguments)
    return problem or (f"{norm} (this engine builds GroupNorm with 8 groups)" if norm else None)


def _dropout_note(key: str, value: Any) -> str:
    return f"{key} {value} left out: dropout does nothing at inference, and learning here runs without it"


def _segresnet(arguments: dict[str, Any]) -> SourceNetwork:
    notes = [_dropout_note("dropout_prob", arguments["dropout_prob"])] if arguments["dropout_prob"] else []
    config = NetworkConfig(
        init_filters=arguments["init_filters"], blocks_down=tuple(arguments["blocks_down"]), blocks_up=tuple(arguments["blocks_up"]),
        in_channels=1, out_channels=arguments["out_channels"],
    )
    return SourceNetwork(config=config, notes=tuple(notes))


def _zoo_network(name: str, arguments: dict[str, Any], entry: dict[str, Any]) -> SourceNetwork:
    from ..monai_zoo_network import MonaiZooNetworkConfig

    notes = [_dropout_note(key, arguments[key]) for key, off in LEFT_OUT[name].items() if arguments[key] not in (off, 0)]
    notes += [f"{key} left out: it changes no output of MONAI's {name}" for key in sorted(IGNORED[name] & set(entry))]
    config = MonaiZooNetworkConfig(name=name, arguments=stored_arguments(name, arguments), out_channels=arguments["out_channels"])
    return SourceNetwork(config=config, notes=tuple(notes))


def source_network_or_raise(reader: ConfigReader) -> SourceNetwork:
    """``network_def`` of the inference config → the network config this engine builds, or a refusal naming why."""
    where = "network_def"
    if not reader.has(where):
        raise InputError(f"{reader.path} has no network_def", "a MONAI bundle's inference config defines its network as network_def; is this a bundle for inference?")
    where, entry = reader.follow(reader.raw(where), where)
    name = target_name(entry)
    if name not in IMPORTED:
        target = entry.get("_target_") if isinstance(entry, dict) else entry
        if name in NOT_SUPPORTED_YET:
            raise InputError(f"{reader.path}: the network {target} is not supported yet", f"{SUPPORTED_HINT}; {name} is planned")
        raise InputError(f"{reader.path}: {where} is {target!r}, not a network CISSegmentation imports", SUPPORTED_HINT)
    if name == SEGRESNET:
        arguments = reader.arguments_or_raise(entry, where, read=SEGRESNET_ARGUMENTS)
        problem = _segresnet_problem(arguments)
    else:
        arguments = reader.arguments_or_raise(entry, where, read=ZOO_ARGUMENTS[name], ignored=IGNORED[name])
        problem = arguments_problem(name, arguments)
    if problem:
        raise InputError(f"{reader.path}: {where} builds {name} with {problem}, which this engine cannot reproduce", f"docs/import.md lists the {name} settings CISSegmentation imports")
    return _segresnet(arguments) if name == SEGRESNET else _zoo_network(name, arguments, entry)


def load_source_weights_or_raise(path: Path) -> dict[str, torch.Tensor]:
    """``models/model.pt`` with ``torch.load(weights_only=True)``: a state dict, or a checkpoint holding one under
    ``model`` or ``state_dict``; a ``module.`` prefix (a model saved inside DistributedDataParallel) is dropped."""
    if not path.is_file():
        raise InputError(
            f"the bundle's weights are missing: {path}",
            "download the bundle with its weights (python -m monai.bundle download --name NAME --bundle_dir DIR); a TorchScript "
            "models/model.ts is not read, since it is code",
        )
    data = path.read_bytes()
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(f"refused to load {path}: it holds {', '.join(unsafe_globals(data, error))}, outside the tensors-only allow-list", WEIGHTS_HINT) from error
    except Exception as error:  # torch reports junk as RuntimeError, EOFError, ValueError…
        raise InputError(f"cannot read {path}: {error}", "the file is damaged or not a PyTorch checkpoint; download the bundle again") from error
    state = next((loaded[key] for key in ("model", "state_dict") if isinstance(loaded, dict) and isinstance(loaded.get(key), dict)), loaded)
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise InputError(f"{path} is not a state dict of tensors", "models/model.pt must hold torch.save(network.state_dict()), or a dict with it under 'model'")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def engine_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MONAI SegResNet's parameter names → SegmentationNetwork's (module docstring)."""
    renames = (("conv_final.0.", "feature_head.0."), ("conv_final.2.conv.", "classifier."))
    mapped = {}
    for key, value in state.items():
        prefix = next(((old, new) for old, new in renames if key.startswith(old)), ("", "backbone."))
        mapped[prefix[1] + key[len(prefix[0]):]] = value
    return mapped


def _reference_or_raise(config: AnyNetworkConfig, config_path: Path) -> tuple[torch.nn.Module, Any]:
    """MONAI's own class for ``config``, and the renaming of its weights onto the engine's network."""
    if isinstance(config, NetworkConfig):
        from monai.networks.nets import SegResNet

        reference = SegResNet(
            spatial_dims=3, init_filters=config.init_filters, in_channels=config.in_channels, out_channels=config.out_channels,
            blocks_down=config.blocks_down, blocks_up=config.blocks_up,
        )
        return reference, engine_state_dict
    from ..monai_zoo_network import monai_network, monai_weights_to_engine

    try:
        return monai_network(config), monai_weights_to_engine  # type: ignore[arg-type]
    except (ValueError, TypeError, RuntimeError) as error:  # a combination of arguments MONAI itself refuses
        raise InputError(f"{config_path}: MONAI's {config.name} refuses the arguments of network_def: {error}", "the bundle's network_def is inconsistent; check it against MONAI's documentation") from error


def network_from_source_or_raise(config: AnyNetworkConfig, state: dict[str, torch.Tensor], weights_path: Path, config_path: Path) -> tuple[AnyNetwork, float]:
    """Our network with the source weights, and the largest difference between its logits and those of MONAI's
    own class with the same weights on a fixed random input (a wrong mapping shows there, not in a patient)."""
    reference, to_engine = _reference_or_raise(config, config_path)
    problem = fit_problem(state, reference.state_dict())
    if problem:
        raise InputError(
            f"the weights in {weights_path} do not fit the network_def in {config_path} ({problem})",
            "the weights and the config come from different models or versions; download the bundle again",
        )
    reference.load_state_dict(state)
    network = build_network(config)
    network.load_state_dict(to_engine(state))
    multiples = patch_multiples(config.to_json())
    side = (2 * multiples[0], multiples[1], multiples[2])  # two voxels on the coarsest level
    probe = torch.randn((1, config.in_channels, *side), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = float((reference.eval()(probe) - network.eval()(probe)).abs().max())
    return network, difference
