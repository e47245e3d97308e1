"""Learning runs on the server: a browser that goes away changes nothing, a server that stops cancels cleanly.

Never a corrupted bundle: after a disconnect the step completes and its version loads; after a stop
the bundle is exactly as before (the engine publishes a version only when it is complete).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import psutil
from studio_browser import Browser
from studio_pages import AXIAL, add_and_paint_organ, open_studio, shoot_views
from studio_process import JOB_DEADLINE_S

from ciss_engine.bundle import Bundle
from ciss_engine.training.step_common import learn_work_dir


def published_files(bundle: Path) -> dict[str, str]:
    """What a bundle publishes (its versions and pointer), by content; unfinished steps' checkpoints are not part of it."""
    return {
        str(path.relative_to(bundle)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(bundle.rglob("*"))
        if path.is_file() and learn_work_dir(bundle) not in path.parents
    }


def start_learning(page, studio, iterations: int) -> None:
    add_and_paint_organ(page, "liver")
    page.type_into("#ciss-iterations", str(iterations))
    page.click("#ciss-learn")
    studio.wait_event("job_started", 30, command="learn")


def test_learning_finishes_when_the_browser_disconnects(start_studio, browser, chromium, bundle_copy, phantom_cohort, shots):
    studio = start_studio("--bundle", bundle_copy, "--ct", phantom_cohort[2] / "image.nii.gz")
    start_learning(open_studio(browser, studio), studio, iterations=2)
    browser.close()  # the tab, its websocket and the browser are gone while the engine learns

    finished = studio.wait_event("job_finished", JOB_DEADLINE_S, command="learn")
    assert finished["state"] in ("succeeded", "rejected"), finished
    bundle = Bundle.open_or_raise(bundle_copy)
    new_version = max(bundle.versions(), key=lambda v: tuple(int(p) for p in v.split(".")))
    assert new_version != "1.0.0"
    step = bundle.load(new_version)
    assert step.registry.names[-1] == "liver" and step.load_state_dict(), "the new version is complete and loads"
    assert bundle.current_version == (new_version if finished["state"] == "succeeded" else "1.0.0")

    # A new tab finds the session as the server kept it: the guard's verdict is there.
    again = Browser(chromium)
    try:
        page = open_studio(again, studio)
        page.wait_for("!!document.querySelector('#ciss-guard')", 20, "the forgetting guard's verdict")
        assert "Forgetting guard" in page.text("#ciss-guard")
        shoot_views(page, shots, "reconnected", [AXIAL])  # the views reach the new tab too
    finally:
        again.close()


def test_stopping_the_server_cancels_learning_and_leaves_the_bundle_unchanged(start_studio, browser, bundle_copy, phantom_cohort):
    before = published_files(bundle_copy)
    studio = start_studio("--bundle", bundle_copy, "--ct", phantom_cohort[2] / "image.nii.gz")
    page = open_studio(browser, studio)
    start_learning(page, studio, iterations=500)
    page.wait_for("(window.trame.state.get('ciss__StatusState__detail') || '').startsWith('learn:')", 120, "training to start")
    engine = psutil.Process(studio.process.pid).children(recursive=True)
    assert engine, "the engine runs in its own process"

    assert studio.stop() == 0, studio.log_tail()
    assert studio.wait_event("job_finished", 5, command="learn")["state"] == "cancelled"
    assert not [p for p in engine if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "no engine process left behind"
    assert published_files(bundle_copy) == before
    assert Bundle.open_or_raise(bundle_copy).current_version == "1.0.0"
