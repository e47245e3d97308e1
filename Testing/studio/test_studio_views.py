"""The studio's views without a browser: the 3D camera is framed once per CT, then left where the user put it."""
from __future__ import annotations

import json
import subprocess
import sys

from studio_process import REPO_ROOT, studio_env

# Builds the real app on a CT, shows two results on it, moves the camera in between, then opens a CT again.
CAMERA_SCRIPT = """
import json, sys
from ciss_studio.serve import prepare_environment
prepare_environment()
from ciss_studio.app import StudioApp

app = StudioApp()
views, logic = app.context.views, app.context.workflow.segmentation_logic
camera = app.context.slicer_app.view_manager.get_threed_views()[0].get_camera_node()

def position():
    return list(camera.GetPosition())

app.data.open_ct(sys.argv[1])
volume = app.context.session.volume_node
first, second = (logic.create_segmentation(volume, name=name) for name in ("v1", "v2"))
views.show_result(first)
camera.SetPosition(1234.0, -567.0, 89.0)
views.show_result(second)
kept = position()
app.data.open_ct(sys.argv[1])
camera.SetPosition(1234.0, -567.0, 89.0)  # so only show_result, not opening the CT, can reframe it
views.show_result(logic.create_segmentation(app.context.session.volume_node, name="v3"))
print(json.dumps({"kept": kept, "reframed": position()}))
"""


def test_the_3d_camera_is_framed_on_the_first_result_of_a_ct_only(phantom_cohort):
    completed = subprocess.run([sys.executable, "-c", CAMERA_SCRIPT, str(phantom_cohort[2] / "image.nii.gz")],
                               capture_output=True, text=True, env=studio_env(), cwd=REPO_ROOT.parent, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["kept"] == [1234.0, -567.0, 89.0], "showing another result of the same CT must keep the user's camera"
    assert report["reframed"] != report["kept"], "the first result on a newly opened CT frames the camera again"
