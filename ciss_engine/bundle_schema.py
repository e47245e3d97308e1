"""What a bundle's JSON files must hold, checked when they are read.

A damaged or hand-edited ``metadata.json`` must fail on load with its name, not later inside torch or
MONAI: a spacing of 0.001 mm asks for a grid of 10¹² voxels, an ``init_filters`` of 10⁹ for a network
that never fits, a string where a number belongs for a traceback. The bounds are those of the bundles
``ciss train`` writes, with room to spare. Plain JSON checks: no torch, so ``ciss verify`` and
``ciss info`` stay light (docs/reliability.md).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import BundleError
from . import monai_zoo_architecture as monai_zoo
from .monai_zoo_architecture import is_int as _int_in
from .monai_zoo_architecture import is_number as _number_in
from .nnunet_architecture import arch_kwargs_problem, axes_problem, downsampling
from .preprocessing_options import options_problem

# network.SUPPORTED_NETWORKS, repeated here so that checking a bundle does not import torch.
NETWORK_NAMES = ("SegResNet", "nnUNet", *monai_zoo.NETWORKS)
MAX_INIT_FILTERS = 512
MAX_BLOCKS_PER_LEVEL = 16
LEVELS = (2, 6)  # SegResNet encoder levels (the engine writes 4)
MAX_CLASSES = 255  # label maps are uint8
SPACING_RANGE_MM = (0.1, 20.0)  # a CT grid, as imaging.SPACING_RANGE_MM
PATCH_RANGE = (8, 512)
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DAMAGED_HINT = "the file is damaged or was edited by hand; restore the bundle from a backup or roll back to another version (ciss rollback)"


def _list_of(value: Any, length: int | None, check: Any) -> bool:
    return isinstance(value, list) and (length is None or len(value) == length) and all(check(v) for v in value)


def _classes_problem(network: dict[str, Any]) -> str | None:
    if network.get("in_channels") != 1:
        return f"ciss.network.in_channels is {network.get('in_channels')!r}, not 1 (one CT channel)"
    if not _int_in(network.get("out_channels"), 2, MAX_CLASSES + 1):
        return f"ciss.network.out_channels is {network.get('out_channels')!r}, not 2-{MAX_CLASSES + 1} (background and organs)"
    return None


def _nnunet_problem(network: dict[str, Any]) -> str | None:
    problem = arch_kwargs_problem(network.get("architecture"), network.get("arch_kwargs")) or axes_problem(network.get("axes"))
    return f"ciss.network: {problem}" if problem else _classes_problem(network)


def _network_problem(network: Any) -> str | None:
    if not isinstance(network, dict):
        return "ciss.network is not an object"
    if network.get("name") not in NETWORK_NAMES:
        return f"ciss.network.name is {network.get('name')!r}; this engine builds {', '.join(NETWORK_NAMES)}"
    if network["name"] == "nnUNet":
        return _nnunet_problem(network)
    if network["name"] in monai_zoo.NETWORKS:
        problem = monai_zoo.network_problem(network)
        return f"ciss.network: {problem}" if problem else _classes_problem(network)
    filters = network.get("init_filters")
    if not _int_in(filters, 8, MAX_INIT_FILTERS) or filters % 8:
        return f"ciss.network.init_filters is {filters!r}, not a multiple of 8 up to {MAX_INIT_FILTERS}"
    down, up = network.get("blocks_down"), network.get("blocks_up")
    if not (_list_of(down, None, lambda b: _int_in(b, 1, MAX_BLOCKS_PER_LEVEL)) and LEVELS[0] <= len(down) <= LEVELS[1]):
        return f"ciss.network.blocks_down is {down!r}, not {LEVELS[0]}-{LEVELS[1]} block counts of 1-{MAX_BLOCKS_PER_LEVEL}"
    if not _list_of(up, len(down) - 1, lambda b: _int_in(b, 1, MAX_BLOCKS_PER_LEVEL)):
        return f"ciss.network.blocks_up is {up!r}, not {len(down) - 1} block counts of 1-{MAX_BLOCKS_PER_LEVEL}"
    return _classes_problem(network)


def patch_multiples(network: dict[str, Any]) -> tuple[int, int, int]:
    """What each patch axis must be a multiple of: the network's downsampling of that axis (a checked ``ciss.network``)."""
    if network["name"] == "nnUNet":
        return downsampling(network["arch_kwargs"], network["axes"])
    if network["name"] in monai_zoo.NETWORKS:
        return monai_zoo.downsampling(network)
    step = 2 ** (len(network["blocks_down"]) - 1)  # SegResNet halves its grid once a level below the first
    return step, step, step


def _preprocessing_problem(preprocessing: Any, multiples: tuple[int, int, int]) -> str | None:
    if not isinstance(preprocessing, dict):
        return "ciss.preprocessing is not an object"
    spacing, window, patch = preprocessing.get("spacing_mm"), preprocessing.get("hu_window"), preprocessing.get("patch_size")
    if not _list_of(spacing, 3, lambda v: _number_in(v, *SPACING_RANGE_MM)):
        return f"ciss.preprocessing.spacing_mm is {spacing!r}, not three spacings of {SPACING_RANGE_MM[0]}-{SPACING_RANGE_MM[1]} mm"
    # An imported model may normalise intensities its own way instead (preprocessing_options.py).
    if "intensity" not in preprocessing and not (_list_of(window, 2, lambda v: _number_in(v, -1e5, 1e5)) and window[0] < window[1]):
        return f"ciss.preprocessing.hu_window is {window!r}, not [low, high] in HU with low < high"
    if "intensity" in preprocessing and window is not None:
        return "ciss.preprocessing has both hu_window and intensity steps; a bundle records one of them"
    if not (_list_of(patch, 3, lambda v: _int_in(v, *PATCH_RANGE)) and all(v % m == 0 for v, m in zip(patch, multiples))):
        return f"ciss.preprocessing.patch_size is {patch!r}, not multiples of {list(multiples)} in {PATCH_RANGE[0]}-{PATCH_RANGE[1]}"
    return options_problem(preprocessing)


def _settings_problem(settings: Any) -> str | None:
    if not isinstance(settings, dict):
        return "its 'ciss' section is not an object"
    network_problem = _network_problem(settings.get("network"))
    if network_problem:
        return network_problem
    problem = _preprocessing_problem(settings.get("preprocessing"), patch_multiples(settings["network"]))
    hashes = settings.get("files_sha256")
    if problem is None and hashes is not None and not (isinstance(hashes, dict) and all(isinstance(h, str) and SHA256.match(h) for h in hashes.values())):
        problem = "ciss.files_sha256 is not a map of file names to SHA-256 digests"
    for key, kind, word in (("status", str, "a string"), ("step", int, "an integer"), ("training", dict, "an object")):
        if problem is None and key in settings and not isinstance(settings[key], kind):
            problem = f"ciss.{key} is {settings[key]!r}, not {word}"
    return problem


def check_metadata_or_raise(metadata: dict[str, Any], path: Path) -> None:
    """The version and the ``ciss`` section of the metadata.json at ``path``."""
    version = metadata.get("version")
    problem = None if isinstance(version, str) and SEMVER.match(version) else f"its version is {version!r}, not a semantic version such as 1.2.0"
    problem = problem or _settings_problem(metadata["ciss"])
    if problem:
        raise BundleError(f"{path} is damaged: {problem}", DAMAGED_HINT)


def check_history_or_raise(history: Any, path: Path) -> None:
    """A version's lineage: a list with one object a step, each naming its version and kind, and the organs
    it added as a list of names (what ``StepRecord.from_json`` reads)."""
    def is_step(entry: Any) -> bool:
        return (isinstance(entry, dict) and isinstance(entry.get("version"), str) and isinstance(entry.get("kind"), str)
                and _list_of(entry.get("organs", []), None, lambda name: isinstance(name, str)))

    if not (isinstance(history, list) and all(is_step(entry) for entry in history)):
        raise BundleError(f"{path} is damaged: it is not a list of steps, each with its version, kind and organs", DAMAGED_HINT)


def check_pointer_or_raise(pointer: Any, path: Path) -> None:
    """``bundle.json``: which version is current, and which rejected ones were accepted knowingly."""
    current = pointer.get("current") if isinstance(pointer, dict) else None
    accepted = pointer.get("accepted_versions", []) if isinstance(pointer, dict) else None
    if not (isinstance(current, str) and SEMVER.match(current)) or not _list_of(accepted, None, lambda v: isinstance(v, str)):
        raise BundleError(
            f"{path} is damaged: it does not name a current version ('current': '1.2.0') and a list of accepted versions",
            "restore bundle.json from a backup, or write it again: {\"format\": \"ciss-bundle\", \"format_version\": 1, \"current\": \"<newest version in versions/>\"}",
        )


def check_prototypes_or_raise(tensors: dict[str, Any], num_classes: int, path: Path) -> None:
    """The tensors of ``models/prototypes.safetensors``: one row a class, voxel counts that fit them, all
    finite (a NaN prototype would poison every later step's distillation instead of failing here)."""
    means, counts = tensors.get("prototypes"), tensors.get("counts")
    if means is None or counts is None:
        problem = f"it holds {sorted(tensors)}, not 'prototypes' and 'counts'"
    elif means.dim() != 2 or means.shape[0] != num_classes or not means.is_floating_point():
        problem = f"its prototypes have shape {tuple(means.shape)} ({means.dtype}), not {num_classes} classes x channels of floats"
    elif tuple(counts.shape) != (num_classes,) or counts.is_floating_point() or bool((counts < 0).any()):
        problem = f"its voxel counts have shape {tuple(counts.shape)} ({counts.dtype}), not {num_classes} counts >= 0"
    else:
        pre = tensors.get("prototypes_pre_activation")
        non_finite = [name for name, tensor in sorted(tensors.items()) if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
        if pre is not None and (tuple(pre.shape) != tuple(means.shape) or not pre.is_floating_point()):
            problem = f"its pre-activation prototypes have shape {tuple(pre.shape)} ({pre.dtype}), not that of the prototypes {tuple(means.shape)}"
        else:
            problem = f"{', '.join(non_finite)} hold NaN or infinite values" if non_finite else None
    if problem:
        raise BundleError(f"{path} is damaged: {problem}", DAMAGED_HINT)
