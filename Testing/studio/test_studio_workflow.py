"""The clinical workflow in a real browser: open, segment all, paint a new organ, learn, compare, export.

One studio and one page for the whole workflow, as a clinician would use it; each step is checked in
the page (state and pixels of the views) and screenshots are kept under test_artifacts/studio/.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from studio_pages import (
    AXIAL, CORONAL, NEW_VIEW, OLD_VIEW, SAGITTAL, STROKES_BOX, add_and_paint_organ, bundle_organs, distance_to, hex_to_rgb, open_studio,
    organ_pixels, shoot_views,
)

from ciss_engine.bundle import Bundle

MIN_OUTLINE_PIXELS = 20  # an organ cut by the slice draws at least a short outline
NEW_ORGAN = "liver"


def seen_in(shots: list[Path], rgb: tuple[int, int, int]) -> int:
    return sum(organ_pixels(shot, rgb) for shot in shots)


def test_clinical_workflow_in_the_browser(start_studio, browser, bundle_copy, phantom_cohort, tmp_path, shots):
    ct = phantom_cohort[2] / "image.nii.gz"  # not a training case of the bundle
    studio = start_studio("--bundle", bundle_copy, "--ct", ct)
    page = open_studio(browser, studio)

    # Opened from the command line: the bundle's organs and the CT are listed.
    old_organs = bundle_organs(page)
    assert list(old_organs) == ["spleen", "kidney_right", "kidney_left", "gallbladder"]
    assert "56×48×40 voxels" in page.text("#ciss-ct")
    page.screenshot(shots / "01_opened.png")

    # Segment all organs: each organ's colour is drawn in the slice views.
    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", 90, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__SegmentState__shown_version') === '1.0.0'", 20, "the result to be shown")
    slices = shoot_views(page, shots, "02_segmented", [AXIAL, CORONAL, SAGITTAL])
    missing = [name for name, rgb in old_organs.items() if seen_in(slices, rgb) < MIN_OUTLINE_PIXELS]
    assert not missing, f"organs not drawn in the slice views: {missing} (see {shots})"

    # Add a new organ and paint it with the segment editor's Paint effect (real mouse strokes).
    add_and_paint_organ(page, NEW_ORGAN)
    liver_rgb = hex_to_rgb(page.state("ciss__OrganState__color"))
    painted = shoot_views(page, shots, "03_painted", [AXIAL])
    # The painted segment is drawn half-transparent over the result: the strokes' area turned towards the organ's colour.
    assert distance_to(painted[0], liver_rgb, STROKES_BOX) < distance_to(slices[0], liver_rgb, STROKES_BOX) - 20

    # Learn with a tiny budget; the forgetting guard's verdict is shown; a rejected step can be accepted knowingly.
    page.type_into("#ciss-iterations", "2")
    page.click("#ciss-learn")
    learned = studio.wait_event("job_finished", 180, command="learn")
    assert learned["state"] in ("succeeded", "rejected"), learned
    page.wait_for("!!document.querySelector('#ciss-guard')", 20, "the forgetting guard's verdict")
    assert "Forgetting guard" in page.text("#ciss-guard")
    if learned["state"] == "rejected":
        assert "Learn again, accepting forgetting" in page.text("#ciss-accept")
        page.click("#ciss-accept")
        assert studio.wait_event("job_finished", 180, command="learn")["state"] == "succeeded"

    # The new version is current, segments the CT, and is compared side by side with the old one.
    assert studio.wait_event("job_finished", 90, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__CompareState__is_comparing') === true", 30, "the side-by-side comparison")
    bundle = Bundle.open_or_raise(bundle_copy)
    new_version = bundle.current_version
    assert new_version != "1.0.0" and bundle.load().registry.names == [*old_organs, NEW_ORGAN]
    page.wait_for(f"window.trame.state.get('ciss__DataState__current_version') === '{new_version}'", 10, "the new version listed")
    assert list(bundle_organs(page)) == [*old_organs, NEW_ORGAN]
    old_view, new_view = shoot_views(page, shots, "04_compared", [OLD_VIEW, NEW_VIEW], views=2)
    assert organ_pixels(old_view, liver_rgb) == 0, "the old version's view shows no paint and no new organ"
    for name, rgb in old_organs.items():
        assert organ_pixels(old_view, rgb) + organ_pixels(new_view, rgb) > 0, f"{name} in neither version's view"

    # Back to one result: all organs of the new version and the painted one are in the views.
    page.click("#ciss-single-view")
    page.wait_for("window.trame.state.get('ciss__CompareState__is_comparing') === false", 10)
    final = shoot_views(page, shots, "05_all_organs", [AXIAL, CORONAL, SAGITTAL])
    missing = [name for name, rgb in old_organs.items() if seen_in(final, rgb) < MIN_OUTLINE_PIXELS]
    assert not missing, f"organs of the new version not drawn: {missing} (see {shots})"
    assert distance_to(final[0], liver_rgb, STROKES_BOX) < distance_to(slices[0], liver_rgb, STROKES_BOX) - 20

    # Export the shown result as a NIfTI label map on the CT's grid.
    page.type_into("#ciss-export-folder", str(tmp_path / "export"))
    page.click("#ciss-export")
    page.wait_for("!!document.querySelector('#ciss-exported')", 20, "the export")
    written = tmp_path / "export" / f"image_organs_{new_version}.nii.gz"
    labels, image = nib.load(written), nib.load(ct)
    assert labels.shape == image.shape and np.allclose(labels.affine, image.affine, atol=1e-3)
    assert set(np.unique(np.asarray(labels.dataobj)).tolist()) <= set(range(len(old_organs) + 2))

    assert not page.console_errors, page.console_errors

    # The web server process never loaded torch: the engine did all the learning in its own processes.
    mapped = Path(f"/proc/{studio.process.pid}/maps").read_text()
    assert "libtorch" not in mapped and "torch/lib" not in mapped
    assert studio.stop() == 0
