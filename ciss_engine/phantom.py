"""Synthetic abdominal CTs with the paper's 8 organ labels, so tests, the demo and benchmarks need no outside data.

Hard on purpose (METHOD.md §5): intensities overlap as in unenhanced CT (liver ≈ spleen ≈ muscle;
pancreas ≈ esophagus ≈ kidneys ≈ vessels ≈ bowel wall; gallbladder ≈ bowel fluid ≈ urine), with
noise, texture and partial volume, so a per-voxel intensity rule stays below 0.6 mean DSC and only
shape, context and position tell the organs apart. Anatomy is defined in patient millimetres and
sampled at the voxel centres, so an oblique grid shows the same patient in the same place.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .atomic import ensure_writable_dir, write_atomic
from .errors import InputError
from .phantom_anatomy import ORGAN_NAMES, Anatomy, Ellipsoid, draw_anatomy, union_bounds, union_distance

DEFAULT_SHAPE = (112, 96, 80)
DEFAULT_SPACING = (3.0, 3.0, 3.0)
MAX_OBLIQUE_DEGREES = 45.0
# Not a coordinate axis, so a transposed or swapped direction matrix shows in every axis.
OBLIQUE_AXIS = np.array([1.0, 1.0, 1.0]) / math.sqrt(3.0)
LABELS: dict[str, int] = {name: index for index, name in enumerate(ORGAN_NAMES, start=1)}
# Who keeps a contested voxel: small organs embedded in others first (the gallbladder sits in the
# liver's fossa, the pancreas tail at the splenic hilum); the liver, which moulds around its
# neighbours, last. A later organ only paints voxels that no earlier one took.
PAINT_ORDER: tuple[str, ...] = ("esophagus", "gallbladder", "pancreas", "kidney_right", "kidney_left", "spleen", "stomach", "liver")
IMAGE_NAME = "image.nii.gz"
LABEL_NAME = "label_seg8.nii.gz"


@dataclasses.dataclass(frozen=True, eq=False)
class PhantomCase:
    """One synthetic CT: ``image`` int16 HU and ``label`` uint8 (0 = background, 1..8 = ``ORGAN_NAMES``),
    both indexed (i, j, k), and the 4x4 voxel-to-RAS ``affine`` in mm (nibabel convention)."""

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    seed: int

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float], oblique_degrees: float = 0.0) -> np.ndarray:
    """Voxel-to-RAS affine with the grid centre at the world origin; axes R, A, S unless rotated
    by ``oblique_degrees`` about ``OBLIQUE_AXIS``."""
    rotation = _axis_rotation(OBLIQUE_AXIS, math.radians(oblique_degrees))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape, float) - 1.0) / 2.0)
    return affine


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation matrix."""
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * cross + (1.0 - math.cos(angle)) * cross @ cross


def case_seed(cohort_seed: int, index: int) -> int:
    """Seed of case ``index`` of a cohort: distinct across cohorts, so seed 0 and seed 1 share no case."""
    return int(np.random.SeedSequence([cohort_seed, index]).generate_state(1)[0])


def _check_options_or_raise(seed: int, shape: tuple[int, ...], spacing: tuple[float, ...], oblique_degrees: float) -> None:
    if int(seed) != seed or seed < 0:
        raise InputError(f"phantom seed {seed!r} is not an integer >= 0", "give a seed such as 0")
    if len(shape) != 3 or min(shape) < 8:
        raise InputError(f"phantom shape {shape} is not 3 sizes >= 8", f"give a shape such as {DEFAULT_SHAPE}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"phantom spacing {spacing} is not 3 positive sizes in mm", f"give a spacing such as {DEFAULT_SPACING}")
    if not abs(oblique_degrees) <= MAX_OBLIQUE_DEGREES:
        raise InputError(f"oblique angle {oblique_degrees} degrees is too large", f"use an angle within ±{MAX_OBLIQUE_DEGREES:g} degrees")


def generate_case(
    seed: int, *, shape: tuple[int, int, int] = DEFAULT_SHAPE, spacing: tuple[float, float, float] = DEFAULT_SPACING, oblique_degrees: float = 0.0
) -> PhantomCase:
    """One synthetic abdominal CT and its 8-organ label map.

    The field of view is ``shape × spacing`` around the upper abdomen (default 336×288×240 mm, lung
    bases to the iliac crests); a smaller one crops the patient, so for a small array keep the field
    of view by coarsening ``spacing`` (e.g. shape (56, 48, 40) at 6 mm). The same seed gives the same
    patient, organ for organ, at any shape, spacing or obliquity (noise, texture and bowel loops
    differ with the grid).
    """
    shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
    spacing = tuple(float(v) for v in spacing)  # type: ignore[assignment]
    _check_options_or_raise(seed, shape, spacing, oblique_degrees)
    anatomy_seed, fields_seed = np.random.SeedSequence(seed).spawn(2)
    anatomy = draw_anatomy(np.random.default_rng(anatomy_seed))
    canvas = _Canvas(phantom_affine(shape, spacing, oblique_degrees), shape, anatomy.shift, np.random.default_rng(fields_seed))
    _paint_body(canvas, anatomy)
    _paint_organs(canvas, anatomy)
    _paint_bowel(canvas, anatomy)
    _paint_lung_bases(canvas, anatomy)
    return PhantomCase(image=canvas.finished_image(anatomy), label=canvas.label, affine=canvas.affine, seed=seed)


class _Canvas:
    """The voxel grid being painted: patient coordinates of every voxel centre, HU, labels, free space."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], shift: np.ndarray, rng: np.random.Generator) -> None:
        self.affine = affine
        self.shape = shape
        self.shift = shift
        self.rng = rng
        i, j, k = (np.arange(n, dtype=np.float32) for n in shape)
        grid = np.meshgrid(i, j, k, indexing="ij", sparse=True)
        self.points = np.stack(np.broadcast_arrays(*[
            sum(np.float32(affine[axis, column]) * grid[column] for column in range(3)) + np.float32(affine[axis, 3] - shift[axis])
            for axis in range(3)
        ]))
        self.hu = np.full(shape, -1000.0, dtype=np.float32)
        self.label = np.zeros(shape, dtype=np.uint8)
        self.free = np.zeros(shape, dtype=bool)  # abdominal cavity not yet taken by any structure

    def box(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, ...] | None:
        """Voxel slices covering the patient-space box [low, high], or None when it is outside the grid."""
        corners = np.array(list(itertools.product(*zip(low, high)))) + self.shift
        ijk = np.linalg.solve(self.affine[:3, :3], (corners - self.affine[:3, 3]).T)
        start = np.clip(np.floor(ijk.min(axis=1)).astype(int), 0, self.shape)
        stop = np.clip(np.ceil(ijk.max(axis=1)).astype(int) + 1, 0, self.shape)
        if np.any(start >= stop):
            return None
        return tuple(slice(a, b) for a, b in zip(start, stop))

    def field(self, shape: tuple[int, ...], sigma: float | tuple[float, ...]) -> np.ndarray:
        """Smooth Gaussian random field, zero mean and unit standard deviation."""
        values = ndimage.gaussian_filter(self.rng.standard_normal(shape, dtype=np.float32), sigma)
        return (values - values.mean()) / max(float(values.std()), 1e-6)

    def finished_image(self, anatomy: Anatomy) -> np.ndarray:
        """Partial volume (about half a voxel of blur), low-frequency texture and scanner noise."""
        image = ndimage.gaussian_filter(self.hu, 0.5)
        texture_sigma = tuple(6.0 / s for s in np.linalg.norm(self.affine[:3, :3], axis=0))
        image += np.float32(anatomy.texture_hu) * self.field(self.shape, texture_sigma)
        image += np.float32(anatomy.noise_hu) * self.rng.standard_normal(self.shape, dtype=np.float32)
        return np.clip(np.rint(image), -1024, 3071).astype(np.int16)


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float, power: float | np.ndarray = 2.0) -> np.ndarray:
    return np.abs((x - cx) / rx) ** power + np.abs((y - cy) / ry) ** power < 1.0


# The back of a trunk is flatter than an ellipse: a superellipse behind keeps room beside the spine
# for the kidneys and the spleen (an elliptic back cut the spleen to a sliver in one case of forty).
BACK_POWER = 2.6


def _paint_body(canvas: _Canvas, anatomy: Anatomy) -> None:
    """Skin-fat-muscle wall, spine, back muscles, psoas, aorta, IVC, ribs and heart; what remains of
    the cavity is free for the organs."""
    x, y, z = canvas.points
    hu, tissue, s = canvas.hu, anatomy.hu, anatomy.body_scale
    a, b = anatomy.body_semi_axes
    power = np.where(y < 0, np.float32(BACK_POWER), np.float32(2.0))

    def inside_wall(inset: float) -> np.ndarray:
        return _ellipse(x, y, 0.0, 0.0, a - inset, b - inset, power)

    hu[inside_wall(0.0)] = tissue["fat"]
    hu[inside_wall(anatomy.fat_mm)] = tissue["muscle"]
    cavity = inside_wall(anatomy.fat_mm + anatomy.muscle_mm)
    hu[cavity] = tissue["visceral_fat"]
    psoas_radius = np.clip(6.0 - 0.2 * z, 0.0, 26.0) * s * (z < 0)
    muscles = _ellipse(x, y, 32 * s, -85 * s, 25 * s, 20 * s) | _ellipse(x, y, -32 * s, -85 * s, 25 * s, 20 * s)
    muscles |= ((np.abs(x) - (28.0 - 0.1 * z) * s) ** 2 + (y + 40 * s) ** 2) < psoas_radius**2
    vertebra = _ellipse(x, y, 0, -45 * s, 18 * s, 18 * s)
    canal = _ellipse(x, y, 0, -72 * s, 8 * s, 8 * s)
    arch = _ellipse(x, y, 0, -84 * s, 10 * s, 12 * s) & ~canal
    vessels = _ellipse(x, y, -15 * s, -20 * s, 11 * s, 11 * s) | _ellipse(x, y, 22 * s, -17 * s, 11 * s, 11 * s)
    # Lower ribs: bands in the wall sloping down toward the front, none anteriorly (cartilage) or low.
    rib_shell = inside_wall(anatomy.fat_mm + 1.0) & ~inside_wall(anatomy.fat_mm + 8.0)
    ribs = rib_shell & (np.sin(2 * np.pi * (z + 0.35 * y) / 32.0) > 0.7) & (z > -30.0 - 0.3 * y) & (y < 0.6 * b) & (np.abs(x) > 20 * s)
    heart = Ellipsoid(np.array([-15.0, 35.0, 150.0]) * s, np.array([60.0, 50.0, 60.0]) * s, np.eye(3))
    heart_mask = heart.distance(canvas.points) < 0
    hu[muscles] = tissue["muscle"]
    hu[vertebra] = tissue["cancellous_bone"]
    hu[vertebra & ~_ellipse(x, y, 0, -45 * s, 15.5 * s, 15.5 * s)] = tissue["cortical_bone"]
    hu[vertebra & (np.mod(z, 32.0) < 7.0)] = 90.0  # intervertebral discs
    hu[arch | ribs] = tissue["cortical_bone"]
    hu[canal] = tissue["csf"]
    hu[vessels | heart_mask] = tissue["blood"]
    canvas.free = cavity & ~(muscles | vertebra | canal | arch | vessels | ribs | heart_mask)


def _paint_organs(canvas: _Canvas, anatomy: Anatomy) -> None:
    for name in PAINT_ORDER:
        shapes = anatomy.organs[name]
        box = canvas.box(*union_bounds(shapes))
        if box is None:
            continue
        points = canvas.points[(slice(None), *box)]
        distance = union_distance(shapes, points)
        mask = (distance < 0) & canvas.free[box]
        canvas.label[box][mask] = LABELS[name]
        canvas.hu[box][mask] = _organ_intensity(canvas, anatomy, name, points, distance)[mask]
        canvas.free[box] &= ~mask


def _organ_intensity(canvas: _Canvas, anatomy: Anatomy, name: str, points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """HU of an organ over its box, with the inner structure that makes it less uniform."""
    tissue = anatomy.hu
    values = np.full(distance.shape, tissue[name], dtype=np.float32)
    if name == "liver":  # hepatic and portal veins: where two random level sets cross, a branching tube network
        vessels = (np.abs(canvas.field(distance.shape, 1.2)) < 0.3) & (np.abs(canvas.field(distance.shape, 1.2)) < 0.3)
        values[vessels] = tissue["blood"]
    elif name.startswith("kidney"):  # renal pelvis with urine, on the hilum side
        (kidney,) = anatomy.organs[name]
        u = kidney.local(points)
        values[((u[0] - 0.35) / 0.4) ** 2 + (u[1] / 0.3) ** 2 + (u[2] / 0.45) ** 2 < 1.0] = tissue["urine"]
    elif name == "pancreas":  # lobulated, with fat between the lobules
        values += np.float32(10.0) * canvas.field(distance.shape, 1.0)
    elif name == "stomach":
        values = _stomach_intensity(canvas, anatomy, points, distance)
    return values


def _stomach_intensity(canvas: _Canvas, anatomy: Anatomy, points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """A 4 mm wall around fluid, gas over fluid (the patient is supine: gas rises anteriorly, +y),
    mottled food, or a collapsed stomach that is all wall."""
    tissue = anatomy.hu
    values = np.full(distance.shape, tissue["stomach"], dtype=np.float32)
    lumen = distance < -4.0
    content = anatomy.stomach_content
    if content in ("fluid", "gas_fluid"):
        values[lumen] = tissue["fluid"]
    if content == "gas_fluid" and lumen.any():
        values[lumen & (points[1] > np.quantile(points[1][lumen], 0.6))] = tissue["gas"]
    if content == "food":
        food = tissue["food"] + 30.0 * canvas.field(distance.shape, 1.0)
        food[canvas.field(distance.shape, 1.5) > 1.3] = tissue["gas"]  # trapped gas bubbles
        values[lumen] = food[lumen]
    return values


def _paint_bowel(canvas: _Canvas, anatomy: Anatomy) -> None:
    """Duodenum and colon along their courses, then small-bowel loops filling the lower abdomen."""
    tissue = anatomy.hu
    for tube, content in ((anatomy.duodenum, "fluid"), (anatomy.colon, "stool")):
        box = canvas.box(*tube.bounds())
        if box is None:
            continue
        points = canvas.points[(slice(None), *box)]
        distance = tube.distance(points)
        mask = (distance < 0) & canvas.free[box]
        values = np.full(distance.shape, tissue["muscle"] - 10.0, dtype=np.float32)  # bowel wall
        lumen = distance < -3.0
        if content == "fluid":
            values[lumen] = tissue["fluid"]
        else:
            values[lumen] = (-20.0 + 40.0 * canvas.field(distance.shape, 0.8))[lumen]
        values[lumen & (canvas.field(distance.shape, 2.0) > 0.4)] = tissue["gas"]
        canvas.hu[box][mask] = values[mask]
        canvas.free[box] &= ~mask
    loops = canvas.field(canvas.shape, 1.8)
    lower = canvas.free & (canvas.points[2] < -30.0 + 12.0 * canvas.field(canvas.shape, 4.0))  # a ragged upper edge
    canvas.hu[lower & (loops > 0.0)] = tissue["muscle"] - 10.0
    lumen = lower & (loops > 0.5)
    canvas.hu[lumen] = tissue["fluid"]
    canvas.hu[lumen & (canvas.field(canvas.shape, 2.5) > 1.2)] = tissue["gas"]
    canvas.free &= ~lower


def _paint_lung_bases(canvas: _Canvas, anatomy: Anatomy) -> None:
    """Lungs above the diaphragm: two domes peaking over the liver and the spleen, the right one
    higher, falling steeply toward the sides and the back (costophrenic recesses), gently toward the
    centre and the front; organs were painted first, so the lung wraps around their tops."""
    x, y, z = canvas.points
    s = anatomy.body_scale
    across, front_back = np.abs(x) / s - 70.0, y / s + 10.0
    fall = 0.011 * np.maximum(across, 0) ** 2 + 0.003 * np.minimum(across, 0) ** 2
    fall += 0.009 * np.minimum(front_back, 0) ** 2 + 0.003 * np.maximum(front_back, 0) ** 2
    dome = 78.0 + 4.0 * np.tanh(x / 20.0) - fall
    mediastinum = (np.abs(x + 5.0) < 30.0) & (y > -35.0)
    open_space = canvas.free & ~mediastinum
    canvas.hu[open_space & (z > dome - 6.0)] = anatomy.hu["muscle"]  # the diaphragm
    canvas.hu[open_space & (z > dome)] = anatomy.hu["lung"]


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return write_atomic(path, lambda tmp: nib.save(image, tmp))


def write_cohort(
    out_dir: Path, n_cases: int, seed: int, *, on_case_written: Callable[[int, PhantomCase], None] | None = None, **case_options
) -> list[Path]:
    """Write ``out_dir/case_000/{image,label_seg8}.nii.gz`` … (the layout of the shared CTs), one file
    at a time and atomically; returns the case folders. ``case_options`` go to :func:`generate_case`.

    Raises:
        OutputError: ``out_dir`` cannot be created or written.
    """
    if n_cases < 1:
        raise InputError(f"asked for {n_cases} phantom cases", "ask for at least one case")
    out_dir = ensure_writable_dir(Path(out_dir))
    folders = []
    for index in range(n_cases):
        case = generate_case(case_seed(seed, index), **case_options)
        folder = out_dir / f"case_{index:03d}"
        _save_nifti(folder / IMAGE_NAME, case.image, case.affine)
        _save_nifti(folder / LABEL_NAME, case.label, case.affine)
        folders.append(folder)
        if on_case_written is not None:
            on_case_written(index, case)
    return folders
