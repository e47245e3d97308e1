"""Bad input in the page: a folder that is no bundle, a file that is no CT, an engine that fails mid-run.

Each is shown in the page with its hint (and the engine's log), the session stays usable, and the
studio keeps serving.
"""
from __future__ import annotations

import shutil

from studio_pages import error_shown, open_paths, open_studio
from studio_process import JOB_DEADLINE_S


def test_bad_bundle_and_ct_and_a_failing_engine_are_shown_not_crashed(start_studio, browser, bundle_copy, phantom_cohort, tmp_path, shots):
    studio = start_studio()  # nothing opened from the command line
    page = open_studio(browser, studio)

    no_bundle = tmp_path / "not_a_bundle"
    no_bundle.mkdir()
    open_paths(page, bundle=no_bundle)
    error_shown(page, contains=str(no_bundle))
    assert page.text("#ciss-error-hint").strip(), "an error comes with a hint"
    assert not page.exists("#ciss-organs")
    page.screenshot(shots / "01_not_a_bundle.png")

    not_a_ct = tmp_path / "scan.nii.gz"
    not_a_ct.write_bytes(b"this is not a NIfTI file")
    open_paths(page, ct=not_a_ct)
    error_shown(page, contains=str(not_a_ct))
    assert not page.text("#ciss-ct").strip()

    # Weights damaged after the bundle was published: the bundle opens (its configs are fine), segmenting fails in the engine.
    damaged = shutil.copytree(bundle_copy, tmp_path / "damaged")
    weights = damaged / "versions" / "1.0.0" / "models" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    open_paths(page, bundle=damaged, ct=phantom_cohort[2] / "image.nii.gz")
    page.wait_for("window.trame.state.get('ciss__DataState__current_version') === '1.0.0' && window.trame.state.get('ciss__SegmentState__is_ready')",
                  20, "the bundle and the CT to open")
    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "failed"
    message = error_shown(page, contains=str(weights))
    assert "restore" in page.text("#ciss-error-hint") or "roll back" in page.text("#ciss-error-hint"), message
    log = page.text("#ciss-error-log")
    assert "segment" in log and str(weights) in log, "the log names the command and the engine's error"
    page.screenshot(shots / "02_engine_failed.png")

    # The session is still usable: the page is not busy, and a good bundle segments.
    open_paths(page, bundle=bundle_copy)
    page.click("#ciss-segment")
    assert studio.wait_event("job_finished", JOB_DEADLINE_S, command="segment")["state"] == "succeeded"
    page.wait_for("!document.querySelector('#ciss-error')", 10, "the error to clear")
    assert studio.process.poll() is None
