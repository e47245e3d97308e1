"""The clinical workflow in a real browser: open, segment all, paint a new organ, learn, compare, export.

One studio and one page for the whole workflow, as a clinician would use it. Each step is checked in
the page's state and in the views' pixels: a view must draw, in the organ's colour, every organ that
the result (exported through the page) holds on the slice the view shows, and no other. The test bundle
paints every organ by construction (painting_bundle.py), where is this machine's arithmetic's, so every
check follows this run's exported result, never an atlas or an earlier run; the slice views are first
moved to the slices where that result holds the most organs. Screenshots are kept under test_artifacts/studio/.
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from studio_pages import (
    AXIAL, COMPARE_VIEWS, CORONAL, MAIN_SLICE_VIEWS, NEW_VIEW, OLD_VIEW, SAGITTAL, SLICE_NORMALS, STROKES_BOX, add_and_paint_organ,
    bundle_organs, distance_to, drawing_problems, export_label_map, fullest_slice, hex_to_rgb, open_studio, shoot_views, show_slice,
    shown_slice,
)
from studio_process import JOB_DEADLINE_S

from ciss_engine.bundle import Bundle

NEW_ORGAN = "liver"
MAIN_VIEWS = [MAIN_SLICE_VIEWS[index] for index in (AXIAL, CORONAL, SAGITTAL)]
PAINT_CONTRAST = 20  # how much nearer the painted colour the strokes' area must be than before painting (colour distance)


def main_view_problems(page, shots: list[Path], labels: np.ndarray, affine: np.ndarray, organs) -> list[str]:
    """Drawing problems of the axial, coronal and sagittal views (``shots`` in that order)."""
    return [problem for shot, view in zip(shots, MAIN_VIEWS) for problem in drawing_problems(shot, labels, shown_slice(page, view, affine), organs)]


def paint_problems(axial: Path, unpainted: Path, rgb: tuple[int, int, int]) -> list[str]:
    """The painted segment is drawn half-transparent over the result: the strokes' area must have turned towards its colour."""
    now, before = distance_to(axial, rgb, STROKES_BOX), distance_to(unpainted, rgb, STROKES_BOX)
    return [] if now < before - PAINT_CONTRAST else [f"the strokes are not drawn in {axial.name} (colour distance {now:.0f}, unpainted {before:.0f})"]


def test_clinical_workflow_in_the_browser(start_studio, browser, bundle_copy, phantom_cohort, tmp_path, shots):
    ct = phantom_cohort[2] / "image.nii.gz"  # not a training case of the bundle
    affine = nib.load(ct).affine
    studio = start_studio("--bundle", bundle_copy, "--ct", ct)
    page = open_studio(browser, studio)

    # Opened from the command line: the bundle's organs and the CT are listed.
    old_organs = bundle_organs(page)
    assert list(old_organs) == ["spleen", "kidney_right", "kidney_left", "gallbladder"]
    assert "56×48×40 voxels" in page.text("#ciss-ct")
    page.screenshot(shots / "01_opened.png")

    # Segment all organs, export the result, show each slice view where it holds the most organs; the views draw what it holds.
    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__SegmentState__shown_version') === '1.0.0'", 20, "the result to be shown")
    old_labels, written = export_label_map(page, tmp_path / "export_old")
    assert written.name == "image_organs_1.0.0.nii.gz"
    assert old_labels.shape == nib.load(ct).shape and np.allclose(nib.load(written).affine, affine, atol=1e-3)
    assert set(np.unique(old_labels).tolist()) <= {0, *(label for label, _ in old_organs.values())}
    for view in MAIN_VIEWS:
        show_slice(page, view, fullest_slice(old_labels, SLICE_NORMALS[view][0]), affine)
    segmented = shoot_views(page, shots, "02_segmented", [AXIAL, CORONAL, SAGITTAL],
                            expect=lambda images: main_view_problems(page, images, old_labels, affine, old_organs))

    # Add a new organ and paint it with the segment editor's Paint effect (real mouse strokes).
    add_and_paint_organ(page, NEW_ORGAN)
    new_rgb = hex_to_rgb(page.state("ciss__OrganState__color"))
    shoot_views(page, shots, "03_painted", [AXIAL], expect=lambda images: paint_problems(images[0], segmented[0], new_rgb))

    # Learn with a tiny budget; the forgetting guard's verdict is shown; a rejected step can be accepted knowingly.
    page.type_into("#ciss-iterations", "2")
    page.click("#ciss-learn")
    learned = studio.wait_event("job_finished", JOB_DEADLINE_S, command="learn")
    assert learned["state"] in ("succeeded", "rejected"), learned
    page.wait_for("!!document.querySelector('#ciss-guard')", 20, "the forgetting guard's verdict")
    assert "Forgetting guard" in page.text("#ciss-guard")
    if learned["state"] == "rejected":
        assert "anyway" in page.text("#ciss-accept")
        page.click("#ciss-accept")
        assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="rollback")["state"] == "succeeded"

    # The new version is current and lists the new organ; the CT is segmented with it and compared with the old one.
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__CompareState__is_comparing') === true", 30, "the side-by-side comparison")
    bundle = Bundle.open_or_raise(bundle_copy)
    new_version = bundle.current_version
    assert new_version != "1.0.0" and bundle.load().registry.names == [*old_organs, NEW_ORGAN]
    page.wait_for(f"window.trame.state.get('ciss__DataState__current_version') === '{new_version}'", 10, "the new version listed")
    new_organs = bundle_organs(page)
    assert list(new_organs) == [*old_organs, NEW_ORGAN]

    # The comparison shows the new version's result as the one to export; each view draws its own version at the same slice.
    new_labels, written = export_label_map(page, tmp_path / "export_new")
    assert written.name == f"image_organs_{new_version}.nii.gz"

    def compare_problems(images: list[Path]) -> list[str]:
        (old_axis, old_index), (new_axis, new_index) = (shown_slice(page, COMPARE_VIEWS[index], affine) for index in (OLD_VIEW, NEW_VIEW))
        if (old_axis, old_index) != (new_axis, new_index):
            return [f"the versions are shown at slices {old_index} and {new_index}, not at the same slice"]
        return [*drawing_problems(images[OLD_VIEW], old_labels, (old_axis, old_index), new_organs),  # the old version, no paint
                *drawing_problems(images[NEW_VIEW], new_labels, (new_axis, new_index), new_organs)]

    shoot_views(page, shots, "04_compared", [OLD_VIEW, NEW_VIEW], views=2, expect=compare_problems)

    # Back to one result: the new version's result and the painted organ in the main views.
    page.click("#ciss-single-view")
    page.wait_for("window.trame.state.get('ciss__CompareState__is_comparing') === false", 10)
    shoot_views(page, shots, "05_all_organs", [AXIAL, CORONAL, SAGITTAL],
                expect=lambda images: [*main_view_problems(page, images, new_labels, affine, old_organs),
                                          *paint_problems(images[0], segmented[0], new_rgb)])
    assert not page.console_errors, page.console_errors

    # The web server process never loaded torch: the engine did all the learning in its own processes.
    mapped = Path(f"/proc/{studio.process.pid}/maps").read_text()
    assert "libtorch" not in mapped and "torch/lib" not in mapped
    assert studio.stop() == 0
