"""The class registry: which organs a bundle segments, with label ids, colours and SNOMED CT codes.

Names are the stable key (``kidney_right``). Known organs take their codes and colours from
``organ_catalog.json``; a site may add a custom organ by giving its name and colour, which then
carries a private code so that DICOM exports stay well-formed. No torch import here: the CLI
answers ``--list-classes`` before torch loads.
"""
from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import InputError

CATALOG_PATH = Path(__file__).with_name("organ_catalog.json")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Custom organs get a code in a private scheme: DICOM SEG/RTSTRUCT require a coded type.
CUSTOM_SCHEME = "99CISS"


@dataclasses.dataclass(frozen=True)
class Code:
    """A coded concept (DICOM code sequence triplet)."""

    scheme: str
    code: str
    meaning: str


@dataclasses.dataclass(frozen=True)
class OrganClass:
    """One foreground class of a bundle.

    >>> OrganClass(label=1, name="spleen", rgb=(157, 108, 162), category=CATEGORY, type=Code("SCT", "78961009", "Spleen")).display_name
    'Spleen'
    """

    label: int
    name: str
    rgb: tuple[int, int, int]
    category: Code
    type: Code
    modifier: Code | None = None
    step: int = 1
    version_introduced: str = "1.0.0"

    @property
    def display_name(self) -> str:
        return self.name.replace("_", " ").capitalize()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["rgb"] = list(self.rgb)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrganClass:
        modifier = data.get("modifier")
        return cls(
            label=int(data["label"]),
            name=str(data["name"]),
            rgb=tuple(int(v) for v in data["rgb"]),  # type: ignore[arg-type]
            category=Code(**data["category"]),
            type=Code(**data["type"]),
            modifier=Code(**modifier) if modifier else None,
            step=int(data.get("step", 1)),
            version_introduced=str(data.get("version_introduced", "1.0.0")),
        )


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Any]:
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


CATEGORY = Code(**_catalog()["category"])


def known_organ_names() -> list[str]:
    return [entry["name"] for entry in _catalog()["organs"]]


def _flagged_organ_names(flag: str) -> frozenset[str]:
    return frozenset(entry["name"] for entry in _catalog()["organs"] if entry.get(flag))


def one_piece_organ_names() -> frozenset[str]:
    """Catalog organs that are one connected structure in every patient (a liver, a kidney; not the bowel, whose
    loops a CT cuts into pieces, nor the thyroid's lobes): a prediction's other islands of them are errors."""
    return _flagged_organ_names("one_piece")


def never_air_organ_names() -> frozenset[str]:
    """Catalog organs whose voxels are never air: parenchyma, blood, bile, bone and nerve (a liver, a kidney, the aorta, the
    gallbladder); not the lungs, the airway or the gut, whose lumen holds gas, nor the urinary bladder, which a catheter
    lets air into."""
    return _flagged_organ_names("never_air")


def enhancing_organ_names() -> frozenset[str]:
    """Catalog organs of perfused tissue or blood that IV contrast brightens (liver, spleen, kidneys, vessels);
    not fluid or air (gallbladder, urinary bladder, the lumen a stomach or bowel label holds), bone or nerve."""
    return _flagged_organ_names("enhances")


def parse_rgb(text: str) -> tuple[int, int, int]:
    """Parse ``"255,0,0"`` or ``"#ff0000"`` into an RGB triple."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise InputError(f"invalid colour {text!r}", "give a colour as R,G,B with values 0-255 (e.g. 255,128,0) or #rrggbb")
    return values  # type: ignore[return-value]


def make_organ(name: str, label: int, *, rgb: tuple[int, int, int] | None = None, step: int = 1, version: str = "1.0.0") -> OrganClass:
    """Build an organ class from the catalog, or a custom one when ``rgb`` is given for an unknown name."""
    if not NAME_PATTERN.match(name):
        raise InputError(
            f"invalid organ name {name!r}",
            "use lower-case letters, digits and underscores, starting with a letter (e.g. kidney_right)",
        )
    catalog = _catalog()
    entry = next((e for e in catalog["organs"] if e["name"] == name), None)
    if entry is None:
        if rgb is None:
            raise InputError(
                f"unknown organ {name!r}",
                f"use a known organ ({', '.join(known_organ_names())}) or add a custom organ with a colour, e.g. {name}:255,128,0",
            )
        organ_type = Code(CUSTOM_SCHEME, f"custom-{name}", name.replace("_", " ").capitalize())
        return OrganClass(label, name, rgb, CATEGORY, organ_type, None, step, version)
    modifier = catalog["modifiers"][entry["modifier"]] if "modifier" in entry else None
    return OrganClass(
        label=label,
        name=name,
        rgb=rgb or tuple(entry["rgb"]),  # type: ignore[arg-type]
        category=CATEGORY,
        type=Code("SCT", entry["type"][0], entry["type"][1]),
        modifier=Code(**modifier) if modifier else None,
        step=step,
        version_introduced=version,
    )


def parse_organ_spec(spec: str) -> tuple[str, int | None, tuple[int, int, int] | None]:
    """Parse one ``NAME[=VALUE][:R,G,B]`` item of ``--organs``: the label value in the input file and an optional colour."""
    spec = spec.strip()
    rgb = None
    if ":" in spec:
        spec, colour = spec.split(":", 1)
        rgb = parse_rgb(colour)
    value = None
    if "=" in spec:
        spec, value_text = spec.split("=", 1)
        if not value_text.isdigit() or int(value_text) < 1:
            raise InputError(f"invalid label value in {spec}={value_text}", "label values are positive integers, e.g. --organs spleen=1,liver=6")
        value = int(value_text)
    return spec.strip(), value, rgb


@dataclasses.dataclass(frozen=True)
class ClassRegistry:
    """Ordered foreground classes of a bundle; label ids are 1..C in order, 0 is background."""

    organs: tuple[OrganClass, ...]

    def __post_init__(self) -> None:
        names = [o.name for o in self.organs]
        if len(set(names)) != len(names):
            raise InputError(f"duplicate organ names in {names}", "list each organ once")
        if [o.label for o in self.organs] != list(range(1, len(self.organs) + 1)):
            raise InputError("class labels must be 1..C in order", "renumber configs/classes.json")

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.organs]

    @property
    def num_classes(self) -> int:
        """Number of output channels, background included."""
        return len(self.organs) + 1

    def __len__(self) -> int:
        return len(self.organs)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def by_name(self, name: str) -> OrganClass:
        for organ in self.organs:
            if organ.name == name:
                return organ
        raise InputError(f"organ {name!r} is not in this bundle", f"this bundle segments: {', '.join(self.names)}")

    def with_new_organs(self, specs: list[tuple[str, tuple[int, int, int] | None]], *, step: int, version: str) -> ClassRegistry:
        """A registry with ``specs`` appended as new classes (class-incremental step)."""
        organs = list(self.organs)
        for name, rgb in specs:
            if name in self:
                raise InputError(f"organ {name!r} is already in the bundle (label {self.by_name(name).label})", "choose an organ the bundle does not segment yet")
            organs.append(make_organ(name, len(organs) + 1, rgb=rgb, step=step, version=version))
        return ClassRegistry(tuple(organs))

    @classmethod
    def from_names(cls, specs: list[tuple[str, tuple[int, int, int] | None]], *, version: str = "1.0.0") -> ClassRegistry:
        return cls(tuple(make_organ(name, i + 1, rgb=rgb, version=version) for i, (name, rgb) in enumerate(specs)))

    def to_json(self) -> dict[str, Any]:
        return {"background": {"label": 0, "name": "background"}, "classes": [o.to_json() for o in self.organs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClassRegistry:
        return cls(tuple(OrganClass.from_json(entry) for entry in data["classes"]))

    def channel_def(self) -> dict[str, str]:
        """MONAI bundle ``channel_def``: output channel index → organ name."""
        return {"0": "background", **{str(o.label): o.name for o in self.organs}}
