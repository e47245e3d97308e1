"""A version's metadata.json is a MONAI bundle's: MONAI's own ``verify_metadata`` against the model zoo's schema.

The schema cannot be fetched where the tests run, so ``Testing/data`` holds a verbatim copy (Testing/data/README.md);
``verify_metadata`` reads a schema already at its target path instead of downloading it.
"""
import copy
import json
import shutil
from pathlib import Path

import pytest
from monai.bundle import verify_metadata

from ciss_engine.bundle import Bundle
from ciss_engine.bundle_metadata import build_metadata

SCHEMA_COPY = Path(__file__).resolve().parents[1] / "data" / "meta_schema_20240725.json"
# The published file's SHA-256: an edited copy fails the check instead of loosening it.
SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"


def _verify(metadata: dict, tmp_path: Path) -> None:
    """Runs MONAI's check on ``metadata`` with the copy standing in for the file its ``schema`` URL names."""
    assert metadata["schema"].rsplit("/", 1)[-1] == SCHEMA_COPY.name, "the bundle names another schema than the copy checked here"
    schema = tmp_path / "schema" / SCHEMA_COPY.name
    schema.parent.mkdir(exist_ok=True)
    shutil.copy(SCHEMA_COPY, schema)
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(json.dumps(metadata))
    verify_metadata(meta_file=str(metadata_file), filepath=str(schema), hash_val=SCHEMA_SHA256, hash_type="sha256")


def test_a_trained_versions_metadata_passes_monais_schema_check(tiny_bundle, tmp_path):
    _verify(Bundle.open_or_raise(tiny_bundle).load().metadata, tmp_path)


def test_an_imported_models_credit_keeps_the_metadata_valid(tiny_bundle, tmp_path):
    version = Bundle.open_or_raise(tiny_bundle).load()
    source = {"format": "monai-bundle", "name": "spleen_ct_segmentation", "authors": None, "copyright": None}
    metadata = build_metadata(version="1.1.0", registry=version.registry, settings={**version.metadata["ciss"], "source": source},
                              changelog={"1.1.0": "imported"})
    assert "imported into CISSegmentation" in metadata["authors"]
    _verify(metadata, tmp_path)


@pytest.mark.parametrize("damage", ["no_network_format", "channels_as_text", "no_output_dtype"])
def test_the_check_refuses_metadata_the_schema_does_not_allow(tiny_bundle, tmp_path, damage):
    """The copy is a real schema that the check applies: metadata that breaks it is refused."""
    metadata = copy.deepcopy(Bundle.open_or_raise(tiny_bundle).load().metadata)
    pred = metadata["network_data_format"]["outputs"]["pred"]
    if damage == "no_network_format":
        del metadata["network_data_format"]
    elif damage == "channels_as_text":
        pred["num_channels"] = str(pred["num_channels"])
    else:
        del pred["dtype"]
    with pytest.raises(ValueError, match="Failed validating"):
        _verify(metadata, tmp_path)
