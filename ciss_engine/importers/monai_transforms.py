"""A MONAI bundle's preprocessing, inferer and postprocessing → the PreprocessingConfig that reproduces them.

Each transform is looked up in an allow-list that says which of its arguments matter and what this engine does
with them; a transform or an argument that would change the result and cannot be reproduced is refused by
name (docs/import.md). Loading, channel-first and typing transforms change nothing once the engine has read the
CT; ``Orientationd`` must be RAS (the engine's grid); ``Spacingd`` gives the spacing and the resampling's
padding; ``ScaleIntensityRanged``, ``NormalizeIntensityd`` and ``ScaleIntensityd`` become intensity steps run
in the same order with MONAI's own transforms; ``SlidingWindowInferer`` gives the patch size, overlap,
blending and padding. Postprocessing may only be the softmax/argmax and the inverse resampling the engine does
anyway.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import InputError
from ..monai_zoo_architecture import is_int
from ..preprocessing import PreprocessingConfig
from ..preprocessing_options import CHOICES, IntensityStep
from .monai_config import ConfigReader, target_name

# Arguments that never change the voxels the network sees (devices, metadata bookkeeping, lazy execution…).
BOOKKEEPING = frozenset({"allow_missing_keys", "meta_keys", "meta_key_postfix", "lazy", "dtype", "overwriting", "track_meta"})
# Transforms that only read the CT or change its container, with every further argument they may take.
PASS_THROUGH: dict[str, frozenset[str]] = {
    "LoadImaged": frozenset({"reader", "image_only", "ensure_channel_first", "simple_keys", "prune_meta_pattern", "prune_meta_sep", "expanduser"}),
    "EnsureChannelFirstd": frozenset({"channel_dim", "strict_check"}),
    "AddChanneld": frozenset(),
    "EnsureTyped": frozenset({"data_type", "device", "wrap_sequence"}),
    "ToTensord": frozenset({"device", "wrap_sequence"}),
}
SPACING = {"pixdim": None, "mode": "bilinear", "padding_mode": "border", "align_corners": False, "scale_extent": False,
           "recompute_affine": False, "min_pixdim": None, "max_pixdim": None, "diagonal": False}
ORIENTATION = {"axcodes": None, "as_closest_canonical": False, "labels": None}
# MONAI transform → (intensity op, its arguments with MONAI's defaults, arguments that must keep their default).
INTENSITY: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "ScaleIntensityRanged": ("scale_intensity_range", {"a_min": None, "a_max": None, "b_min": None, "b_max": None, "clip": False}, {}),
    "NormalizeIntensityd": ("normalize_intensity", {"nonzero": False, "channel_wise": False}, {"subtrahend": None, "divisor": None}),
    "ScaleIntensityd": ("scale_intensity", {"minv": 0.0, "maxv": 1.0, "channel_wise": False}, {"factor": None}),
}
SLIDING_WINDOW = {"roi_size": None, "overlap": 0.25, "mode": "constant", "padding_mode": "constant", "sigma_scale": 0.125, "cval": 0.0}
SLIDING_WINDOW_IGNORED = frozenset({"sw_batch_size", "sw_device", "device", "progress", "cache_roi_weight_map", "cpu_thresh",
                                    "buffer_steps", "buffer_dim", "with_coord"})
# Postprocessing: transform → arguments that must hold these values (what `ciss segment` does anyway), and ignored ones.
POSTPROCESSING: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "Activationsd": ({"softmax": True, "sigmoid": False, "other": None}, frozenset()),
    "AsDiscreted": ({"argmax": True, "to_onehot": None, "threshold": None, "rounding": None}, frozenset({"keepdim"})),
    "Invertd": ({}, frozenset({"transform", "orig_keys", "meta_keys", "orig_meta_keys", "nearest_interp", "to_tensor", "device",
                               "post_func", "meta_key_postfix"})),
    "SaveImaged": ({}, frozenset({"output_dir", "output_ext", "output_dtype", "output_postfix", "separate_folder", "resample",
                                  "squeeze_end_dims", "data_root_dir", "print_log", "output_format", "writer", "mode",
                                  "padding_mode", "scale", "channel_dim", "savepath_in_metadict", "folder_layout", "output_name_formatter"})),
    "EnsureTyped": ({}, PASS_THROUGH["EnsureTyped"]),
    "CopyItemsd": ({}, frozenset({"times", "names"})),
}
NOT_REPRODUCED_HINT = "docs/import.md lists the MONAI transforms CISSegmentation reproduces; a model that needs others cannot be imported yet"


def _entries(reader: ConfigReader, where: str, node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """The transforms of a Compose (or a plain list) as (where, entry), nested Composes flattened, references and
    macros followed, ``_disabled_`` ones left out."""
    where, node = reader.follow(node, where)
    if isinstance(node, dict) and target_name(node) == "Compose":
        where, node = reader.follow(node.get("transforms", []), f"{where}::transforms")
    if not isinstance(node, list):
        raise InputError(f"{reader.path}: {where} is not a list of transforms", NOT_REPRODUCED_HINT)
    for index, item in enumerate(node):
        item_where, entry = reader.follow(item, f"{where}::{index}")
        if isinstance(entry, dict) and target_name(entry) == "Compose":
            yield from _entries(reader, item_where, entry)
        elif not isinstance(entry, dict) or target_name(entry) is None:
            raise InputError(f"{reader.path}: {item_where} is {entry!r}, not a transform", NOT_REPRODUCED_HINT)
        elif not reader.is_disabled(entry, item_where):
            yield item_where, entry


def _not_reproduced(reader: ConfigReader, where: str, what: str) -> InputError:
    return InputError(f"{reader.path}: {where} {what}, which CISSegmentation cannot reproduce", NOT_REPRODUCED_HINT)


def _keys(reader: ConfigReader, entry: dict[str, Any], where: str) -> list[str]:
    keys = reader.value(entry.get("keys", []), f"{where}::keys")
    return [keys] if isinstance(keys, str) else list(keys)


def _for_image(value: Any, position: int) -> Any:
    """A per-key argument (``mode: ["bilinear", "nearest"]``) for the image's key."""
    return value[position] if isinstance(value, (list, tuple)) else value


class _PreprocessingBuilder:
    """Walks the preprocessing transforms in order and collects what PreprocessingConfig needs."""

    def __init__(self, reader: ConfigReader) -> None:
        self.reader = reader
        self.image_key: str | None = None
        self.spacing: dict[str, Any] | None = None
        self.oriented = False
        self.intensity: list[IntensityStep] = []
        self.intensity_before_resampling = False

    def add(self, where: str, entry: dict[str, Any]) -> None:
        reader, name = self.reader, target_name(entry)
        keys = _keys(reader, entry, where)
        self.image_key = self.image_key or (keys[0] if keys else None)
        if self.image_key not in keys:
            raise _not_reproduced(reader, where, f"({name}) works on {keys}, not on the image {self.image_key!r}")
        position = keys.index(self.image_key)
        if name in PASS_THROUGH:
            reader.arguments_or_raise(entry, where, read={"keys": None}, ignored=PASS_THROUGH[name] | BOOKKEEPING)
        elif name == "Orientationd":
            self._orientation(where, reader.arguments_or_raise(entry, where, read={"keys": None, **ORIENTATION}, ignored=BOOKKEEPING))
        elif name == "Spacingd":
            arguments = reader.arguments_or_raise(entry, where, read={"keys": None, **SPACING}, ignored=BOOKKEEPING | {"ensure_same_shape"})
            self._spacing(where, {k: _for_image(v, position) if k not in ("keys", "pixdim") else v for k, v in arguments.items()})
        elif name in INTENSITY:
            self._intensity(where, entry, name)
        else:
            raise _not_reproduced(reader, where, f"is {entry.get('_target_')!r}")

    def _orientation(self, where: str, arguments: dict[str, Any]) -> None:
        if arguments["axcodes"] != "RAS" or arguments["as_closest_canonical"] or arguments["labels"] not in (None, [["L", "R"], ["P", "A"], ["I", "S"]]):
            raise _not_reproduced(self.reader, where, f"orients the CT to {arguments['axcodes']!r} (the engine's grid is RAS)")
        self.oriented = True

    def _spacing(self, where: str, arguments: dict[str, Any]) -> None:
        if self.spacing is not None or not self.oriented:
            raise _not_reproduced(self.reader, where, "resamples " + ("a second time" if self.spacing is not None else "before Orientationd (the engine orients to RAS first)"))
        pixdim = arguments["pixdim"]
        pixdim = [pixdim] * 3 if isinstance(pixdim, (int, float)) and not isinstance(pixdim, bool) else pixdim
        if not (isinstance(pixdim, list) and len(pixdim) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.1 <= v <= 20 for v in pixdim)):
            raise _not_reproduced(self.reader, where, f"resamples to pixdim {arguments['pixdim']!r} (the engine needs three spacings of 0.1-20 mm)")
        fixed = {name: arguments[name] for name in ("align_corners", "scale_extent", "recompute_affine", "min_pixdim", "max_pixdim", "diagonal")}
        changed = [f"{name}={value!r}" for name, value in fixed.items() if value != SPACING[name]]
        if arguments["mode"] != "bilinear" or arguments["padding_mode"] not in CHOICES["image_padding"] or changed:
            raise _not_reproduced(self.reader, where, f"resamples with mode={arguments['mode']!r}, padding_mode={arguments['padding_mode']!r} {' '.join(changed)}".rstrip())
        self.spacing = {"spacing_mm": tuple(float(v) for v in pixdim), "image_padding": arguments["padding_mode"]}
        self.intensity_before_resampling = bool(self.intensity)

    def _intensity(self, where: str, entry: dict[str, Any], name: str) -> None:
        op, arguments, fixed = INTENSITY[name]
        values = self.reader.arguments_or_raise(entry, where, read={"keys": None, **arguments, **fixed}, ignored=BOOKKEEPING)
        changed = [f"{key}={values[key]!r}" for key, default in fixed.items() if values[key] != default]
        if changed:
            raise _not_reproduced(self.reader, where, f"({name}) sets {', '.join(changed)}")
        if self.spacing is not None and self.intensity_before_resampling:
            raise _not_reproduced(self.reader, where, f"({name}) normalises intensities both before and after resampling")
        try:
            self.intensity.append(IntensityStep.from_json({"op": op, **{key: values[key] for key in arguments}}))
        except ValueError as error:
            raise _not_reproduced(self.reader, where, f"({name}): {error}") from error


def _sliding_window(reader: ConfigReader, multiples: tuple[int, int, int]) -> dict[str, Any]:
    """The inferer's patch size, overlap, blending and padding; the patch a multiple of the network's downsampling
    per axis (``multiples``), with at least two voxels on the network's coarsest level (a norm in training needs two)."""
    if not reader.has("inferer"):
        raise InputError(f"{reader.path} has no inferer", "CISSegmentation runs a model patch by patch; the bundle's inference config needs a SlidingWindowInferer")
    where, entry = reader.follow(reader.raw("inferer"), "inferer")
    if target_name(entry) != "SlidingWindowInferer":
        raise _not_reproduced(reader, where, f"is {entry.get('_target_') if isinstance(entry, dict) else entry!r} (the engine runs a SlidingWindowInferer)")
    arguments = reader.arguments_or_raise(entry, where, read=SLIDING_WINDOW, ignored=SLIDING_WINDOW_IGNORED)
    roi = arguments["roi_size"]
    roi = [roi] * 3 if isinstance(roi, int) and not isinstance(roi, bool) else roi
    if not (isinstance(roi, list) and len(roi) == 3 and all(is_int(v, 8, 512) and v % m == 0 for v, m in zip(roi, multiples))
            and any(v > m for v, m in zip(roi, multiples))):
        raise _not_reproduced(
            reader, f"{where}::roi_size",
            f"is {arguments['roi_size']!r} (the engine needs three multiples of {list(multiples)} in 8-512, one of them at least twice its multiple)",
        )
    if arguments["sigma_scale"] != SLIDING_WINDOW["sigma_scale"] or arguments["cval"] != SLIDING_WINDOW["cval"]:
        raise _not_reproduced(reader, where, f"sets sigma_scale={arguments['sigma_scale']!r}, cval={arguments['cval']!r}")
    overlap = arguments["overlap"]
    if not (isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0 <= overlap < 1):
        raise _not_reproduced(reader, f"{where}::overlap", f"is {overlap!r} (one fraction in [0, 1))")
    if arguments["mode"] not in CHOICES["window_blend"] or arguments["padding_mode"] not in CHOICES["window_padding"]:
        raise _not_reproduced(reader, where, f"blends with mode={arguments['mode']!r} and pads with padding_mode={arguments['padding_mode']!r}")
    return {"patch_size": tuple(roi), "window_overlap": float(overlap), "window_blend": arguments["mode"], "window_padding": arguments["padding_mode"]}


def _check_postprocessing(reader: ConfigReader) -> None:
    if not reader.has("postprocessing"):
        return
    for where, entry in _entries(reader, "postprocessing", reader.raw("postprocessing")):
        name = target_name(entry)
        if name not in POSTPROCESSING:
            raise _not_reproduced(reader, where, f"is {entry.get('_target_')!r} (the engine's output is the argmax on the CT's own grid)")
        required, ignored = POSTPROCESSING[name]
        values = reader.arguments_or_raise(entry, where, read={"keys": None, **required}, ignored=ignored | BOOKKEEPING)
        changed = [f"{key}={values[key]!r}" for key, value in required.items() if values[key] != value]
        if changed:
            raise _not_reproduced(reader, where, f"({name}) sets {', '.join(changed)}")


def source_preprocessing_or_raise(reader: ConfigReader, multiples: tuple[int, int, int]) -> PreprocessingConfig:
    """What the engine must do to a CT to give the network what the source bundle gave it."""
    if not reader.has("preprocessing"):
        raise InputError(f"{reader.path} has no preprocessing", "a MONAI bundle's inference config lists its transforms as preprocessing")
    builder = _PreprocessingBuilder(reader)
    for where, entry in _entries(reader, "preprocessing", reader.raw("preprocessing")):
        builder.add(where, entry)
    if builder.spacing is None or not builder.oriented:
        missing = "Spacingd" if builder.spacing is None else "Orientationd"
        raise InputError(
            f"{reader.path}: the preprocessing has no {missing}",
            "CISSegmentation resamples every CT to the model's RAS grid and spacing; a model run on the CT's own grid cannot be imported yet",
        )
    if not builder.intensity:
        raise InputError(f"{reader.path}: the preprocessing does not normalise intensities", "the importer expects ScaleIntensityRanged, NormalizeIntensityd or ScaleIntensityd")
    _check_postprocessing(reader)
    return PreprocessingConfig(
        hu_window=None, intensity=tuple(builder.intensity), intensity_before_resampling=builder.intensity_before_resampling,
        **builder.spacing, **_sliding_window(reader, multiples),
    )
