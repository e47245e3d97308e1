"""What the studio tests do in the page, named as a user would say it, and how they read the views' pixels.

View boxes come in layout order: the main layout (trame-slicer's "Axial Primary") is axial, 3D,
coronal, sagittal; the comparison layout is old (left), new (right).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from studio_browser import Browser, Page
from studio_process import StudioProcess

SESSION_KEY = "ciss__DataState__bundle_path"  # any studio state key: present once the websocket session is up
AXIAL, THREE_D, CORONAL, SAGITTAL = 0, 1, 2, 3
OLD_VIEW, NEW_VIEW = 0, 1
MAIN_SLICE_VIEWS = {AXIAL: "Red", CORONAL: "Green", SAGITTAL: "Yellow"}  # layout index → Slicer view name
COMPARE_VIEWS = {OLD_VIEW: "Red", NEW_VIEW: "Compare"}
# The RAS axis each slice view steps along and the sign of its slider (the slice offset is measured along the slice
# node's normal, and Slicer's sagittal normal points to the patient's left: offset +3 mm is x = -3 mm).
# test_studio_views pins these against the studio's own slice nodes.
SLICE_NORMALS = {"Red": (2, 1), "Green": (1, 1), "Yellow": (0, -1), "Compare": (2, 1)}
VOXEL_CENTRE_TOLERANCE = 1e-3  # in voxels: the views show voxel centres (trame-slicer snaps them there)
MIN_OUTLINE_PIXELS = 10  # a voxel of an organ cut by the slice draws an outline of 14 (a small view) to ~50 pixels
STRAY_PIXELS = 5  # an organ's exact colour where it is not: allows a coincidental blend or two


def open_studio(browser: Browser, studio: StudioProcess) -> Page:
    """A tab on the studio once its session is up (the websocket delivered the state and the panels are drawn)."""
    page = browser.new_page()
    page.open(studio.url)
    page.wait_for_session(SESSION_KEY, "#ciss-workflow")
    return page


def view_boxes(page: Page) -> list[dict[str, float]]:
    """The page boxes of the views' images, in layout order."""
    return page.evaluate(
        "Array.from(document.querySelectorAll('img.image-display-area')).map(e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }).filter(r => r.width > 0)"
    )


def organ_pixels(screenshot: Path, rgb: tuple[int, int, int], tolerance: int = 2) -> int:
    """Pixels of exactly the organ's colour (segment outlines are drawn opaque; PNG views keep colours exact)."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())


def distance_to(screenshot: Path, rgb: tuple[int, int, int], box: tuple[float, float, float, float]) -> float:
    """Mean colour distance to ``rgb`` inside ``box`` (left, top, right, bottom as fractions of the image)."""
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(float)
    height, width = pixels.shape[:2]
    left, top, right, bottom = box
    region = pixels[int(top * height) : int(bottom * height), int(left * width) : int(right * width)]
    return float(np.linalg.norm(region - np.array(rgb, dtype=float), axis=2).mean())


Check = Callable[[list[Path]], list[str]]  # screenshots → what they draw wrongly (nothing: as expected)


def shoot_views(page: Page, folder: Path, name: str, indices: list[int], *, views: int = 4, expect: Check | None = None,
                timeout_s: float = 30.0) -> list[Path]:
    """Screenshots of each chosen view once the page shows the layout's ``views`` views, each has drawn something and
    they draw what ``expect`` expects; then of the whole page. A view's new image reaches the page some time after
    the server changed its state (a new layout, a result, a slice), so the tests wait for the drawing they expect,
    never for a fixed time; on timeout the last problems fail the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        boxes = view_boxes(page)
        problems = [f"the page shows {len(boxes)} views, not {views}"]
        if len(boxes) == views:
            shots = [page.screenshot(folder / f"{name}_view{i}.png", clip=boxes[i]) for i in indices]
            drawn = all(np.asarray(Image.open(shot).convert("L")).max() > 0 for shot in shots)
            problems = (expect(shots) if expect else []) if drawn else ["a view has drawn nothing yet"]
        if not problems:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: after {timeout_s:.0f} s the views still draw wrongly: {'; '.join(problems)}")
        time.sleep(0.3)
    page.screenshot(folder / f"{name}.png")
    return shots


def hex_to_rgb(text: str) -> tuple[int, int, int]:
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def bundle_organs(page: Page) -> dict[str, tuple[int, tuple[int, int, int]]]:
    """The organs the page lists for the open bundle version: name → (label id, colour)."""
    return {row["name"]: (row["label"], hex_to_rgb(row["color"])) for row in page.state("ciss__DataState__organs")}


def shown_slice(page: Page, view: str, affine: np.ndarray) -> tuple[int, int]:
    """(voxel axis, index) of the CT slice a view shows, from its slider as the page holds it."""
    return slice_at(view, page.state(f"{view}__SliderState__value"), affine)


def slice_at(view: str, offset: float, affine: np.ndarray) -> tuple[int, int]:
    """(voxel axis, index) of the CT slice a view shows at slice ``offset`` (mm along its slice normal).

    The CT must be axis-aligned (RAS): then the view's RAS axis is the voxel axis of the same number. A position
    between two voxels fails rather than being rounded: which of the two VTK draws is not the test's to guess.
    """
    axis, sign = SLICE_NORMALS[view]
    position = (sign * offset - affine[axis, 3]) / affine[axis, axis]
    index = round(position)
    assert abs(position - index) <= VOXEL_CENTRE_TOLERANCE, f"the {view} view is between two voxels (voxel {position:.3f} of axis {axis})"
    return axis, index


def slice_offset(view: str, index: int, affine: np.ndarray) -> float:
    """The slice offset at which a view shows the centre of voxel ``index`` along its axis (``slice_at``'s inverse)."""
    axis, sign = SLICE_NORMALS[view]
    return float(sign * (affine[axis, 3] + index * affine[axis, axis]))


def show_slice(page: Page, view: str, index: int, affine: np.ndarray) -> None:
    """Move a view to a CT slice through its slider's state, as the slider does."""
    key = json.dumps(f"{view}__SliderState__value")
    page.evaluate(f"window.trame.state.set({key}, {slice_offset(view, index, affine)})")
    page.wait_idle()


def fullest_slice(labels: np.ndarray, axis: int) -> int:
    """The slice along ``axis`` that holds the most organs (then the most organ voxels): there a view's drawing says most."""
    def richness(index: int) -> tuple[int, int]:
        plane = np.take(labels, index, axis=axis)
        return len(set(np.unique(plane).tolist()) - {0}), int(np.count_nonzero(plane))

    return max(range(labels.shape[axis]), key=richness)


def drawing_problems(shot: Path, labels: np.ndarray, where: tuple[int, int], organs: dict[str, tuple[int, tuple[int, int, int]]]) -> list[str]:
    """What a view draws wrongly: an organ of the label map on the shown slice without its colour, or the
    colour of an organ that is not there (the view would show another result)."""
    axis, index = where
    present = set(np.unique(np.take(labels, index, axis=axis)).tolist())
    problems = []
    for name, (label, rgb) in organs.items():
        pixels = organ_pixels(shot, rgb)
        if label in present and pixels < MIN_OUTLINE_PIXELS:
            problems.append(f"{name} is on slice {index} of axis {axis} but not drawn ({pixels} pixels) in {shot.name}")
        if label not in present and pixels > STRAY_PIXELS:
            problems.append(f"{name} is not on slice {index} of axis {axis} but {pixels} pixels of its colour are in {shot.name}")
    return problems


def export_label_map(page: Page, folder: Path) -> tuple[np.ndarray, Path]:
    """Export the shown result as a NIfTI label map through the Export panel into a new ``folder``; its voxels and its path."""
    page.type_into("#ciss-export-folder", str(folder))
    page.click("#ciss-export")
    page.wait_for(f"(document.querySelector('#ciss-exported') || {{textContent: ''}}).textContent.includes({json.dumps(str(folder))})", 20,
                  "the label map to be written")
    return exported_label_map(page)


def exported_label_map(page: Page) -> tuple[np.ndarray, Path]:
    """The label map the Export panel says it wrote (every export writes one, DICOM exports too): its voxels and its path."""
    path = Path(page.text("#ciss-exported").split("Wrote ", 1)[1].split(";")[0].strip())
    return np.asarray(nib.load(path).dataobj), path


def open_paths(page: Page, *, bundle: Path | None = None, ct: Path | None = None) -> None:
    """Type the paths and click Open, as a user does."""
    if bundle is not None:
        page.type_into("#ciss-bundle-path", str(bundle))
        page.click("#ciss-open-bundle")
    if ct is not None:
        page.type_into("#ciss-ct-path", str(ct))
        page.click("#ciss-open-ct")


def error_shown(page: Page, *, contains: str) -> str:
    """The status area's error once its message names ``contains`` (the server's answer to what the page asked)."""
    page.wait_for(f"document.querySelector('#ciss-error-message') && document.querySelector('#ciss-error-message').textContent.includes({contains!r})",
                  20, f"an error naming {contains}")
    return page.text("#ciss-error")


STROKES_BOX = (0.36, 0.46, 0.63, 0.54)  # where add_and_paint_organ paints surely (fractions of the axial view)


def add_and_paint_organ(page: Page, name: str) -> None:
    """Add a new organ by name and paint three strokes across the middle of the axial view (covering STROKES_BOX),
    each stroke once the previous one was counted (the server applies a stroke when the button is released)."""
    page.type_into("#ciss-organ-name", name)
    page.press("Enter")
    page.press("Escape")  # close the name list, which covers the button below
    page.wait_for(f"window.trame.state.get('ciss__OrganState__name') === {json.dumps(name)}", 10, "the organ name")
    page.click("#ciss-add-organ")
    page.wait_for("window.trame.state.get('ViewerLayoutState__active_tool') === 'SegmentEditorUI'", 10, "the segment editor")
    # The editor's layout is drawn some time after the tool switched: wait for its views, never for a time.
    page.wait_for("Array.from(document.querySelectorAll('img.image-display-area'))"
                  f".filter(e => e.getBoundingClientRect().width > 0).length > {AXIAL}", 30, "the editor's views")
    axial = view_boxes(page)[AXIAL]
    x0, y0 = axial["x"] + 0.35 * axial["width"], axial["y"] + 0.5 * axial["height"]
    for dy in (-0.06, 0.0, 0.06):
        y = y0 + dy * axial["height"]
        before = painted_text(page, name)
        page.drag([(x0 + i * 0.015 * axial["width"], y) for i in range(21)])
        wait_until_painted(page, name, before)
    page.click("#ciss-tool-workflow")


def painted_text(page: Page, name: str) -> str:
    rows = page.state("ciss__OrganState__new_organs") or []
    return next((row["painted"] for row in rows if row["name"] == name), "")


def wait_until_painted(page: Page, name: str, before: str, timeout_s: float = 60.0) -> None:
    """Until the organ's painted-voxel count differs from ``before``: each stroke paints voxels no other stroke did,
    and the server recounts once after it was applied."""
    deadline = time.monotonic() + timeout_s
    while (text := painted_text(page, name)) == before or "voxels" not in text:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the painted voxels of {name} did not change in {timeout_s} s (still {text!r})")
        time.sleep(0.2)
