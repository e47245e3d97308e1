"""``ciss import --format nnunet``: one fold of an nnU-Net v2 trained model → a CISSegmentation bundle, version 1.0.0.

What nnU-Net does to a CT is written as the bundle's preprocessing, on the engine's RAS grid: the plans'
target spacing and patch size (moved from nnU-Net's axis order, the reader's reversed array axes permuted by
``transpose_forward``, to x, y, z), CT normalisation from the plans' foreground intensities (clip to the 0.5-99.5
percentiles, then subtract the mean and divide by the standard deviation: one ScaleIntensityRange) before
resampling (nnU-Net's own resize, nnunet_resampling.py), a Gaussian sliding window at step 0.5, and test-time
mirroring on the axes the checkpoint allows.
The plans and dataset.json are kept in the bundle (``ciss.source.nnunet``) so a grown model can be exported back
as an nnU-Net folder (nnunet_export.py). Differences that remain are listed in docs/import.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..bundle import BundleVersion
from ..errors import InputError
from ..events import EventSink
from ..nnunet_architecture import arch_kwargs_problem
from ..nnunet_network import NnUNetNetworkConfig, NnUNetSegmentationNetwork, constructor_problem, nnunet_weights_to_engine
from ..preprocessing import PreprocessingConfig
from ..preprocessing_options import IntensityStep
from .imported_version import files_sha256, licence_files, write_imported_bundle
from .monai_classes import registry_from_channels_or_raise
from .new_bundle import check_output_or_raise
from .nnunet_checkpoint import NnUNetCheckpoint, load_checkpoint_or_raise
from .nnunet_folder import NnUNetModelFolder, channel_names, check_model_or_raise, configuration_or_raise, read_json_or_raise
from .weights import fit_problem

FORMAT = "nnunet"
STAGES = 4
# Our decoder walk against the library's own forward, on a random input: float rounding only.
PARITY_TOLERANCE = 1e-4


def _engine_axes(plans: dict[str, Any]) -> tuple[int, int, int]:
    """Model axis k → engine axis: nnU-Net's array is the reader's (z, y, x) permuted by transpose_forward."""
    transpose = plans.get("transpose_forward", [0, 1, 2])
    if sorted(transpose) != [0, 1, 2]:
        raise InputError(f"plans.json: transpose_forward {transpose!r} is not a permutation of 0, 1, 2", "the plans are damaged; copy the model folder again")
    return tuple(2 - int(t) for t in transpose)  # type: ignore[return-value]


def _on_engine_axes(values: list[Any], axes: tuple[int, int, int]) -> list[Any]:
    engine = [values[0]] * 3
    for model_axis, engine_axis in enumerate(axes):
        engine[engine_axis] = values[model_axis]
    return engine


def _intensity(plans: dict[str, Any], configuration: dict[str, Any], path: Path) -> tuple[IntensityStep, ...]:
    scheme = configuration["normalization_schemes"][0]
    if scheme == "ZScoreNormalization":
        return (IntensityStep.from_json({"op": "normalize_intensity", "nonzero": bool(configuration.get("use_mask_for_norm", [False])[0])}),)
    properties = plans.get("foreground_intensity_properties_per_channel", {}).get("0", {})
    try:
        low, high = float(properties["percentile_00_5"]), float(properties["percentile_99_5"])
        mean, std = float(properties["mean"]), max(float(properties["std"]), 1e-8)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: CT normalisation needs foreground_intensity_properties_per_channel (missing {error})", "the plans are damaged; copy the model folder again") from error
    return (IntensityStep.from_json({"op": "scale_intensity_range", "a_min": low, "a_max": high, "b_min": (low - mean) / std, "b_max": (high - mean) / std, "clip": True}),)


def _preprocessing(plans: dict[str, Any], configuration: dict[str, Any], axes: tuple[int, int, int], checkpoint: NnUNetCheckpoint, path: Path) -> PreprocessingConfig:
    return PreprocessingConfig(
        spacing_mm=tuple(float(s) for s in _on_engine_axes(configuration["spacing"], axes)),  # type: ignore[arg-type]
        hu_window=None,
        patch_size=tuple(int(p) for p in _on_engine_axes(configuration["patch_size"], axes)),  # type: ignore[arg-type]
        intensity=_intensity(plans, configuration, path),
        intensity_before_resampling=True,  # nnU-Net normalises, then resamples
        resampling="nnunet",  # nnU-Net's own resize: cubic in, linear logits back (nnunet_resampling.py)
        window_mirroring_axes=tuple(sorted(axes[a] for a in checkpoint.mirroring_axes or ())),
    )


def _network_or_raise(configuration: dict[str, Any], out_channels: int, axes: tuple[int, int, int], path: Path) -> NnUNetNetworkConfig:
    architecture = configuration["architecture"]
    name = str(architecture["network_class_name"]).rsplit(".", 1)[-1]
    kwargs = architecture.get("arch_kwargs")
    problem = arch_kwargs_problem(name, kwargs) or constructor_problem(name, kwargs)
    if problem:
        raise InputError(f"{path}: {problem}", "the importer builds PlainConvUNet and ResidualEncoderUNet with nnU-Net's standard ops only")
    return NnUNetNetworkConfig(architecture=name, arch_kwargs=kwargs, out_channels=out_channels, axes=axes)


def _mapped_network_or_raise(config: NnUNetNetworkConfig, checkpoint: NnUNetCheckpoint, folder: NnUNetModelFolder) -> tuple[NnUNetSegmentationNetwork, float]:
    """The network with the checkpoint's weights, and the largest difference between the engine's decoder walk
    (which also yields the feature tap) and the library's own forward on a random input."""
    network = NnUNetSegmentationNetwork(config)
    state = nnunet_weights_to_engine(checkpoint.network_weights)
    head = state.get("unet.decoder.seg_layers.0.weight")
    if head is not None and head.shape[0] != config.out_channels:
        raise InputError(f"{folder.dataset_path} lists {config.out_channels} labels but the network in {folder.checkpoint} has {head.shape[0]} outputs",
                         "dataset.json and the checkpoint come from different models; copy the model folder again")
    problem = fit_problem(state, network.state_dict())
    if problem:
        raise InputError(f"the weights in {folder.checkpoint} do not fit the network in {folder.plans_path} ({problem})", "the checkpoint and the plans come from different models")
    network.load_state_dict(state)
    side = [2 * d for d in config.downsampling()]
    probe = torch.randn((1, 1, *side), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        network.eval()
        ours = network(probe)
        theirs = network.unet(probe.permute(network.model_axis_order)).permute(network.engine_axis_order)
    return network, float((ours - theirs).abs().max())


def import_nnunet_model(source: Path, output: Path, *, fold: str, sink: EventSink) -> BundleVersion:
    """Read, check and map fold ``fold`` of the nnU-Net model at ``source``; write it as a new bundle at ``output``."""
    check_output_or_raise(output)
    folder = NnUNetModelFolder.find_or_raise(source, fold)
    sink.progress("import", 0, STAGES)
    plans, dataset = read_json_or_raise(folder.plans_path), read_json_or_raise(folder.dataset_path)
    checkpoint = load_checkpoint_or_raise(folder.checkpoint)
    sink.progress("import", 1, STAGES)
    configuration = configuration_or_raise(plans, checkpoint.configuration, folder.plans_path)
    check_model_or_raise(configuration, checkpoint.configuration, dataset, folder)
    registry, renamed = registry_from_channels_or_raise(channel_names(dataset, folder.dataset_path), folder.dataset_path, "labels")
    axes = _engine_axes(plans)
    network_config = _network_or_raise(configuration, registry.num_classes, axes, folder.plans_path)
    preprocessing = _preprocessing(plans, configuration, axes, checkpoint, folder.plans_path)
    sink.progress("import", 2, STAGES)
    network, difference = _mapped_network_or_raise(network_config, checkpoint, folder)
    if difference > PARITY_TOLERANCE:
        raise InputError(f"the imported network's outputs differ from nnU-Net's by {difference:.3g}", "this is a bug in the importer: please report it with the model's name")
    sink.progress("import", 3, STAGES)
    licences = licence_files([folder.root, folder.root.parent])
    name = str(dataset.get("name") or folder.root.parent.name)
    record = {
        "format": FORMAT, "name": name, "version": f"{folder.root.name} fold {fold}", "authors": "", "copyright": "",
        "license": str(dataset.get("licence", dataset.get("license", ""))), "folder": str(folder.root.resolve()),
        "files_sha256": files_sha256(folder.root, [folder.plans_path, folder.dataset_path, folder.checkpoint]),
        "channel_names": renamed, "licence_files": sorted(licences),
        "nnunet": {"plans": plans, "dataset": dataset, "configuration": checkpoint.configuration, "trainer_name": checkpoint.trainer_name,
                   "fold": fold, "mirroring_axes": None if checkpoint.mirroring_axes is None else list(checkpoint.mirroring_axes)},
    }
    notes = [
        f"nnU-Net {checkpoint.trainer_name}, configuration {checkpoint.configuration}, fold {fold}: {network_config.architecture} built from the plans",
        "CTs are reoriented to RAS before nnU-Net's preprocessing: the model is assumed trained on RAS-stored CTs, as TotalSegmentator's are",
    ]
    version = write_imported_bundle(
        output, registry=registry, network=network_config.to_json(), preprocessing=preprocessing.to_json(), source=record,
        state_dict=network.state_dict(), notes=notes, metrics={"max_logit_difference_to_source": difference}, licences=licences,
        description=f"imported from the nnU-Net model {name} ({folder.root.name}, fold {fold})",
    )
    sink.progress("import", STAGES, STAGES)
    for note in notes:
        sink.log(note)
    return version
