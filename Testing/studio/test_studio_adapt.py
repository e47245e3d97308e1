"""Adapting the bundle to a site in a real browser: segment, copy the result for correction, correct it in the segment
editor, Adapt, and compare the versions; the engine's step learned from the corrected copy, never from the result."""
from __future__ import annotations

import time

from studio_pages import AXIAL, open_studio, view_boxes
from studio_process import JOB_DEADLINE_S

from ciss_engine.bundle import Bundle

ORGANS = ["spleen", "kidney_right", "kidney_left", "gallbladder"]


def contours_text(page) -> str:
    return " / ".join(f"{row['ct']}: {row['organs']}" for row in page.state("ciss__ContoursState__contours") or [])


def wait_until_changed(page, before: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (text := contours_text(page)) == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the site's contours were not recounted in {timeout_s} s (still {text!r})")
        time.sleep(0.2)
    return text


def test_a_corrected_result_adapts_the_bundle_to_the_site(start_studio, browser, bundle_copy, phantom_cohort, shots):
    ct = phantom_cohort[2] / "image.nii.gz"
    studio = start_studio("--bundle", bundle_copy, "--ct", ct)
    page = open_studio(browser, studio)
    assert page.evaluate("document.querySelector('#ciss-adapt').disabled") is True  # nothing drawn: nothing to adapt to
    assert page.evaluate("document.querySelector('#ciss-correct').disabled") is True  # no result yet

    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__SegmentState__shown_version') === '1.0.0'", 20, "the result to be shown")
    assert contours_text(page) == ""

    # Copy the result for correction: the editor opens on its first organ; every organ the result holds is listed as drawn.
    page.click("#ciss-correct")
    page.wait_for("window.trame.state.get('ViewerLayoutState__active_tool') === 'SegmentEditorUI'", 10, "the segment editor")
    copied = wait_until_changed(page, "")
    assert copied.startswith("image: ") and all(organ in copied for organ in ORGANS), copied  # the painting bundle paints every organ
    page.wait_for("Array.from(document.querySelectorAll('img.image-display-area'))"
                  f".filter(e => e.getBoundingClientRect().width > 0).length > {AXIAL}", 30, "the editor's views")
    # A correction: one Paint stroke across the axial view adds voxels to the active organ; the list follows it.
    axial = view_boxes(page)[AXIAL]
    x0, y = axial["x"] + 0.2 * axial["width"], axial["y"] + 0.5 * axial["height"]
    page.drag([(x0 + i * 0.03 * axial["width"], y) for i in range(21)])
    corrected = wait_until_changed(page, copied)
    page.screenshot(shots / "01_corrected.png")
    page.click("#ciss-tool-workflow")

    # Adapt with a tiny budget; the guard's verdict is shown; a rejected step is accepted knowingly.
    page.wait_for("document.querySelector('#ciss-adapt').disabled === false", 10, "Adapt to be enabled")
    page.type_into("#ciss-iterations", "2")
    page.click("#ciss-adapt")
    adapted = studio.wait_event("job_finished", JOB_DEADLINE_S, command="adapt")
    assert adapted["state"] in ("succeeded", "rejected"), adapted
    page.wait_for("!!document.querySelector('#ciss-guard')", 20, "the forgetting guard's verdict")
    if adapted["state"] == "rejected":
        page.click("#ciss-accept")
        assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="rollback")["state"] == "succeeded"

    # The new version is current, with the same organs; the CT is segmented with it and compared with the old one.
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.wait_for("window.trame.state.get('ciss__CompareState__is_comparing') === true", 30, "the side-by-side comparison")
    page.screenshot(shots / "02_compared.png")
    bundle = Bundle.open_or_raise(bundle_copy)
    current = bundle.load()
    assert bundle.current_version != "1.0.0" and current.registry.names == ORGANS
    step = current.history[-1]
    assert step["kind"] == "domain" and step["labelled_organs"] == ORGANS, step
    assert contours_text(page) == corrected  # the site's contours stay for the next step
    assert not page.console_errors, page.console_errors
    assert studio.stop() == 0
