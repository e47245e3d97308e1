"""The studio's views without a browser: the slice views show voxel centres, at the CT slices the browser tests
name from the sliders; the 3D camera is framed once per CT, then left where the user put it."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
from studio_pages import SLICE_NORMALS, VOXEL_CENTRE_TOLERANCE, slice_at, slice_offset
from studio_process import REPO_ROOT, studio_env

# Builds the real app on a CT; for each slice view, where its slice plane lies in the CT's voxels (its centre and
# normal) and its offset, as opened and after moving it to the offset given for it.
SLICES_SCRIPT = """
import json, sys
import numpy as np
from ciss_studio.serve import prepare_environment
prepare_environment()
from ciss_studio.app import StudioApp
from CISSegmentationLib.volume_io import ijk_to_ras

app = StudioApp()
app.data.open_ct(sys.argv[1])
ras_to_ijk = np.linalg.inv(ijk_to_ras(app.context.session.volume_node))
views = app.context.slicer_app.view_manager

def plane(name):
    view = views.get_view(name)
    matrix = view.get_view_node().GetSliceToRAS()
    slice_to_ras = np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
    return {"offset": view.get_slice_value(), "centre": (ras_to_ijk @ slice_to_ras[:, 3])[:3].tolist(),
            "normal": (ras_to_ijk[:3, :3] @ slice_to_ras[:3, 2]).tolist()}

report = {"opened": {}, "moved": {}}
for name, offset in json.loads(sys.argv[2]).items():
    report["opened"][name] = plane(name)
    views.get_view(name).set_slice_value(offset)
    report["moved"][name] = plane(name)
print(json.dumps(report))
"""
MOVED_TO = 5  # a slice far from the centre, where a wrong sign or axis would show another slice

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


def run_script(script: str, *args: str) -> dict:
    """Run ``script`` with the studio's environment; its last output line, as JSON."""
    completed = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=studio_env(), cwd=REPO_ROOT.parent,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_slice_views_show_voxel_centres_at_the_slices_their_sliders_name(phantom_cohort):
    ct = phantom_cohort[2] / "image.nii.gz"
    affine = nib.load(ct).affine
    report = run_script(SLICES_SCRIPT, str(ct), json.dumps({view: slice_offset(view, MOVED_TO, affine) for view in SLICE_NORMALS}))
    for view, (axis, sign) in SLICE_NORMALS.items():
        for when in ("opened", "moved"):
            shown = report[when][view]
            assert np.allclose(np.asarray(shown["normal"]) * affine[axis, axis], sign * np.eye(3)[axis]), f"{view}: normal {shown['normal']}"
            drawn = shown["centre"][axis]
            assert abs(drawn - round(drawn)) <= VOXEL_CENTRE_TOLERANCE, f"{view} {when}: between voxels ({drawn:.3f})"
            assert slice_at(view, shown["offset"], affine) == (axis, round(drawn)), f"{view} {when}: the slider names another slice"
        assert round(report["moved"][view]["centre"][axis]) == MOVED_TO


def test_the_3d_camera_is_framed_on_the_first_result_of_a_ct_only(phantom_cohort):
    report = run_script(CAMERA_SCRIPT, str(phantom_cohort[2] / "image.nii.gz"))
    assert report["kept"] == [1234.0, -567.0, 89.0], "showing another result of the same CT must keep the user's camera"
    assert report["reframed"] != report["kept"], "the first result on a newly opened CT frames the camera again"
