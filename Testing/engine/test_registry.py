import collections
import re

import pytest
from pydicom.sr.codedict import codes

from ciss_engine.errors import InputError
from ciss_engine.registry import CATEGORY, ClassRegistry, Code, known_organ_names, make_organ, parse_organ_spec, parse_rgb

# Codes of the catalog that differ from pydicom's dictionary on purpose, with the reason.
DELIBERATE = {
    # DICOM CID 7150 names 91723000 "Anatomical Structure"; 3D Slicer's General Anatomy terminology, which the desktop
    # panel matches segments against (Testing/slicer_logic/test_segmentation_logic.py), uses 123037004 for it.
    ("123037004", "Anatomical Structure"),
}


def test_paper_organs_are_known_with_snomed_codes():
    for index, name in enumerate(["spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "pancreas", "liver", "stomach"], 1):
        organ = make_organ(name, index)
        assert organ.type.scheme == "SCT" and organ.type.code.isdigit()
        assert organ.category.code == "123037004"
    assert make_organ("kidney_left", 1).modifier.meaning == "Left"
    assert make_organ("kidney_right", 1).type == make_organ("kidney_left", 1).type
    assert len(known_organ_names()) >= 25


def _pydicom_names() -> dict[str, set[str]]:
    """Every meaning pydicom gives each SNOMED CT code, in lower case, with the "(body structure)" tag and a
    trailing "structure" dropped (pydicom lists "Urinary bladder structure (body structure)" beside "Bladder")."""
    names: dict[str, set[str]] = collections.defaultdict(set)
    for code in codes.SCT.concepts.values():
        names[code.value].add(re.sub(r"( structure)?( \(body structure\))?$", "", code.meaning.lower()))
    return names


def test_catalog_snomed_codes_agree_with_pydicom_where_it_knows_them():
    catalog = [make_organ(name, 1) for name in known_organ_names()]
    used: list[Code] = [CATEGORY, *(organ.type for organ in catalog), *(organ.modifier for organ in catalog if organ.modifier)]
    names, codes_of_name = _pydicom_names(), collections.defaultdict(set)
    for value, meanings in names.items():
        for meaning in meanings:
            codes_of_name[meaning].add(value)
    wrong = {
        (code.code, code.meaning) for code in used
        if (code.code in names and code.meaning.lower() not in names[code.code])  # a code pydicom knows, under another name
        or (code.meaning.lower() in codes_of_name and code.code not in codes_of_name[code.meaning.lower()])  # a name, another code
    }
    assert all(code.scheme == "SCT" for code in used) and wrong == DELIBERATE
    assert sum(code.code in names for code in used) > 0.9 * len(used)  # the check sees nearly every code


def test_custom_organ_needs_a_colour_and_gets_a_private_code():
    with pytest.raises(InputError, match="unknown organ 'tumour_bed'") as caught:
        make_organ("tumour_bed", 5)
    assert "255,128,0" in caught.value.hint
    organ = make_organ("tumour_bed", 5, rgb=(255, 128, 0))
    assert organ.type.scheme == "99CISS" and organ.rgb == (255, 128, 0)


@pytest.mark.parametrize("bad", ["Liver", "1liver", "liver-2", ""])
def test_invalid_names_are_refused(bad):
    with pytest.raises(InputError):
        make_organ(bad, 1)


def test_organ_spec_and_colour_parsing():
    assert parse_organ_spec("liver=6") == ("liver", 6, None)
    assert parse_organ_spec("bed:#ff8000") == ("bed", None, (255, 128, 0))
    assert parse_rgb("1,2,3") == (1, 2, 3)
    with pytest.raises(InputError):
        parse_rgb("300,0,0")
    with pytest.raises(InputError):
        parse_organ_spec("liver=0")


def test_registry_round_trip_channel_def_and_growth():
    registry = ClassRegistry.from_names([("spleen", None), ("liver", None)])
    assert ClassRegistry.from_json(registry.to_json()) == registry
    assert registry.channel_def() == {"0": "background", "1": "spleen", "2": "liver"}
    grown = registry.with_new_organs([("pancreas", None)], step=2, version="1.1.0")
    assert grown.by_name("pancreas").label == 3 and grown.by_name("pancreas").step == 2
    with pytest.raises(InputError, match="already in the bundle"):
        registry.with_new_organs([("liver", None)], step=2, version="1.1.0")
    with pytest.raises(InputError, match="not in this bundle"):
        registry.by_name("stomach")
