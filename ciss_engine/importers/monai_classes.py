"""A MONAI bundle's output channels (``metadata.json`` → ``network_data_format.outputs.pred.channel_def``) → the
class registry, by name: channel ``i`` is the organ that ``channel_def`` names for ``"i"``, whatever order the
file lists them in.

Names are made engine names (lower case, ``_`` between words: the zoo's ``vertebrae_L5`` becomes
``vertebrae_l5``); a name the organ catalog knows, directly or through a few spellings other tools use
(``right kidney``, ``bladder``), takes the catalog's SNOMED CT code and colour; any other name becomes a custom
organ with a private code and a colour drawn from its name, the same on every import.
"""
from __future__ import annotations

import colorsys
import hashlib
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..registry import NAME_PATTERN, ClassRegistry, known_organ_names, make_organ

BACKGROUND = "background"
# Spellings of catalog organs in other tools' label lists (after normalisation): exact synonyms only; a structure that
# covers more than a catalog organ (the zoo's portal_vein_and_splenic_vein) stays a custom organ with its own name.
ALIASES = {
    "bladder": "urinary_bladder", "gall_bladder": "gallbladder", "oesophagus": "esophagus", "ivc": "inferior_vena_cava",
    "small_intestine": "small_bowel", "spinalcord": "spinal_cord",
}
SIDES = ("left", "right")


def engine_name(name: str) -> str:
    """``"Right Kidney"`` → ``"right_kidney"``: lower case, runs of other characters become ``_``."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    return f"organ_{cleaned}" if cleaned[:1].isdigit() else cleaned


def catalog_name(name: str) -> str:
    """The catalog's name for an engine name, where it knows the organ under another spelling: ``right_kidney`` →
    ``kidney_right``, ``bladder`` → ``urinary_bladder``; otherwise the name itself."""
    known = set(known_organ_names())
    if name in known:
        return name
    for side in SIDES:
        if name.startswith(f"{side}_") and f"{name[len(side) + 1:]}_{side}" in known:
            return f"{name[len(side) + 1:]}_{side}"
    return ALIASES.get(name, name)


def colour_of(name: str) -> tuple[int, int, int]:
    """A saturated colour drawn from the name's hash: distinct organs look distinct, and a re-import looks the same."""
    hue = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.65, 0.9))  # type: ignore[return-value]


def _channel_def_or_raise(metadata: dict[str, Any], path: Path) -> dict[str, Any]:
    outputs = metadata.get("network_data_format", {}).get("outputs", {}) if isinstance(metadata.get("network_data_format"), dict) else {}
    pred = outputs.get("pred") if isinstance(outputs, dict) else None
    if pred is None and isinstance(outputs, dict) and len(outputs) == 1:
        pred = next(iter(outputs.values()))
    channel_def = pred.get("channel_def") if isinstance(pred, dict) else None
    if not isinstance(channel_def, dict) or not channel_def:
        raise InputError(
            f"{path} has no network_data_format.outputs.pred.channel_def",
            "the importer names the classes from channel_def (\"0\": \"background\", \"1\": \"spleen\", …); add it to the bundle's metadata.json",
        )
    return channel_def


def _check_input_or_raise(metadata: dict[str, Any], path: Path) -> None:
    inputs = metadata.get("network_data_format", {}).get("inputs", {})
    image = next(iter(inputs.values()), {}) if isinstance(inputs, dict) and inputs else {}
    modality = str(image.get("modality", "CT")) if isinstance(image, dict) else "CT"
    if modality.upper() != "CT":
        raise InputError(f"{path}: the model's input modality is {modality}", "CISSegmentation segments CT; this model was trained on another modality")


def registry_from_metadata_or_raise(metadata: dict[str, Any], path: Path, out_channels: int) -> tuple[ClassRegistry, dict[str, str]]:
    """The registry of the ``out_channels`` - 1 organs, and engine name → source name where they differ."""
    _check_input_or_raise(metadata, path)
    channel_def = _channel_def_or_raise(metadata, path)
    try:
        channels = {int(key): value for key, value in channel_def.items()}
    except (TypeError, ValueError):
        raise InputError(f"{path}: channel_def keys {sorted(channel_def)} are not channel numbers", "channel_def maps \"0\", \"1\", … to class names") from None
    if sorted(channels) != list(range(out_channels)):
        raise InputError(
            f"{path}: channel_def names channels {sorted(channels)}, but the network's head has out_channels {out_channels} (channels 0-{out_channels - 1})",
            "channel_def must name every output channel of network_def exactly once; the metadata and the config come from different models",
        )
    return registry_from_channels_or_raise(channels, path, "channel_def")


def registry_from_channels_or_raise(channels: dict[int, Any], path: Path, field: str) -> tuple[ClassRegistry, dict[str, str]]:
    """Output channel → source name (every channel 0..C-1, checked by the caller) → the registry, and engine
    name → source name where they differ. ``field`` names where the file keeps the names, for the errors."""
    out_channels = len(channels)
    if str(channels[0]).strip().lower() != BACKGROUND:
        raise InputError(
            f"{path}: channel 0 is {channels[0]!r}, not background",
            "CISSegmentation needs the background as output channel 0 (as MONAI's and nnU-Net's segmentation models have it); this model's channels cannot be mapped",
        )
    names: dict[str, str] = {}
    organs = []
    for channel in range(1, out_channels):
        source = channels[channel]
        name = catalog_name(engine_name(str(source)))
        if not NAME_PATTERN.match(name):
            raise InputError(f"{path}: channel {channel} is named {source!r}, which gives no usable organ name", f"name each channel with letters, digits and _ in {field}")
        if name in names:
            raise InputError(f"{path}: channels {names[name]!r} and {source!r} both become the organ {name!r}", f"give the channels distinct names in {field}")
        names[name] = str(source)
        custom = name not in known_organ_names()
        organs.append(make_organ(name, channel, rgb=colour_of(name) if custom else None))
    renamed = {name: source for name, source in names.items() if name != source}
    return ClassRegistry(tuple(organs)), renamed
