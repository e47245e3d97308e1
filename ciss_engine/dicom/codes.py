"""The class registry's SNOMED CT codes as DICOM code items, shared by the RTSTRUCT and SEG writers."""
from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset

from ..registry import CUSTOM_SCHEME, Code, OrganClass


def coded(code: Code) -> CodedConcept:
    """A DICOM code item; highdicom moves values over 16 characters to LongCodeValue."""
    return CodedConcept(value=code.code, scheme_designator=code.scheme, meaning=code.meaning)


def coded_type(organ: OrganClass) -> CodedConcept:
    """The organ's type code with its laterality as Segmented Property Type Modifier, as SEG and RTSTRUCT nest it."""
    concept = coded(organ.type)
    if organ.modifier is not None:
        concept.SegmentedPropertyTypeModifierCodeSequence = [coded(organ.modifier)]
    return concept


def declare_private_schemes(dataset: Dataset, organs: list[OrganClass]) -> None:
    """Name the private scheme of custom organs in Coding Scheme Identification, as PS3.3 C.12.1 asks of "99…" schemes."""
    if any(o.type.scheme == CUSTOM_SCHEME for o in organs):
        item = Dataset()
        item.CodingSchemeDesignator = CUSTOM_SCHEME
        item.CodingSchemeName = "CISSegmentation custom organs"
        item.CodingSchemeResponsibleOrganization = "the site that added the organ"
        dataset.CodingSchemeIdentificationSequence = [item]
