"""Organ shapes of the synthetic abdominal CT phantom, drawn per case, in patient millimetres.

Coordinates are RAS patient coordinates centred in the upper abdomen: +x points to the patient's
right (liver, right kidney), +y anterior, +z superior. This is the NIfTI/nibabel RAS+ convention,
the one the shared CTs follow (their livers lie at +x). Each organ is a union of deformed
ellipsoids or tubes; ``distance`` gives an approximate signed distance in mm (negative inside), so
walls and lumens are thresholds of one function.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

# The paper's class order (METHOD.md §5); label id = position + 1, as in the shared data's seg8.
ORGAN_NAMES: tuple[str, ...] = ("spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "pancreas", "liver", "stomach")
STOMACH_CONTENTS: tuple[str, ...] = ("fluid", "gas_fluid", "food", "collapsed")


def _column(vector: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a 3-vector to broadcast against a (3, ...) point array."""
    return np.asarray(vector, dtype=np.float32).reshape((3,) + (1,) * (ndim - 1))


@dataclasses.dataclass(frozen=True, eq=False)
class Wobble:
    """Low-frequency random deformation: a few plane waves in a shape's own coordinates.

    Smooth and analytic, so it can be evaluated at any point (oblique grids included) at the cost
    of a few sines per voxel.
    """

    wave_vectors: np.ndarray  # (K, 3), radians per unit of the shape's coordinates
    phases: np.ndarray  # (K,)
    amplitudes: np.ndarray  # (K,)

    @classmethod
    def draw(cls, rng: np.random.Generator, amplitude: float, *, terms: int = 6, frequency: tuple[float, float] = (1.0, 2.6)) -> Wobble:
        directions = rng.normal(size=(terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wave_vectors = directions * rng.uniform(*frequency, size=(terms, 1))
        amplitudes = amplitude * rng.uniform(0.5, 1.0, size=terms) / math.sqrt(terms)
        return cls(wave_vectors, rng.uniform(0.0, 2.0 * math.pi, size=terms), amplitudes)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        total = np.zeros(u.shape[1:], dtype=np.float32)
        for vector, phase, amplitude in zip(self.wave_vectors, self.phases, self.amplitudes):
            total += np.float32(amplitude) * np.sin(vector[0] * u[0] + vector[1] * u[1] + vector[2] * u[2] + np.float32(phase))
        return total


@dataclasses.dataclass(frozen=True, eq=False)
class Ellipsoid:
    """A bent, deformed ellipsoid.

    ``rotation`` columns are the local axes in patient coordinates; local z is the long axis and
    ``bend`` curves it toward local +x (a kidney's hilum, the spleen's concave face).
    """

    center: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray
    wobble: Wobble | None = None
    bend: float = 0.0

    def local(self, points: np.ndarray) -> np.ndarray:
        """Normalised local coordinates: the undeformed ellipsoid is the unit ball."""
        offset = points - _column(self.center, points.ndim)
        u = np.tensordot(self.rotation.T.astype(np.float32), offset, axes=1)
        return u / _column(self.semi_axes, points.ndim)

    def distance(self, points: np.ndarray) -> np.ndarray:
        u = self.local(points)
        u[0] -= np.float32(self.bend) * (u[2] ** 2 - 0.5)
        radius = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
        if self.wobble is not None:
            radius += self.wobble(u)
        return (radius - 1.0) * np.float32(self.semi_axes.min())

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = 1.35 * float(self.semi_axes.max())
        return self.center - reach, self.center + reach


@dataclasses.dataclass(frozen=True, eq=False)
class Tube:
    """A deformed tube along a polyline whose radius varies linearly along each segment."""

    points: np.ndarray  # (n, 3)
    radii: np.ndarray  # (n,)
    wobble: Wobble

    def distance(self, points: np.ndarray) -> np.ndarray:
        best = np.full(points.shape[1:], np.inf, dtype=np.float32)
        for start, end, r_start, r_end in zip(self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]):
            axis = (end - start).astype(np.float32)
            offset = points - _column(start, points.ndim)
            t = np.clip(np.tensordot(axis, offset, axes=1) / np.float32(axis @ axis), 0.0, 1.0)
            gap = offset - t[None] * _column(axis, points.ndim)
            along = np.sqrt((gap**2).sum(axis=0)) - (np.float32(r_start) + t * np.float32(r_end - r_start))
            np.minimum(best, along, out=best)
        scale = np.float32(self.radii.mean())
        return best + self.wobble(points / scale) * scale

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = 1.3 * float(self.radii.max())
        return self.points.min(axis=0) - reach, self.points.max(axis=0) + reach


Shape = Ellipsoid | Tube


def union_distance(shapes: tuple[Shape, ...], points: np.ndarray) -> np.ndarray:
    """Signed distance of a union of shapes (the minimum of the parts)."""
    return np.minimum.reduce([shape.distance(points) for shape in shapes])


def union_bounds(shapes: tuple[Shape, ...]) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = zip(*(shape.bounds() for shape in shapes))
    return np.min(lows, axis=0), np.max(highs, axis=0)


def frame(long_axis: tuple[float, float, float], toward: tuple[float, float, float]) -> np.ndarray:
    """Rotation whose local z is ``long_axis`` and local x points as close to ``toward`` as allowed."""
    z = np.asarray(long_axis, dtype=float)
    z /= np.linalg.norm(z)
    x = np.asarray(toward, dtype=float) - np.dot(toward, z) * z
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


@dataclasses.dataclass(frozen=True, eq=False)
class Anatomy:
    """One synthetic patient: organ shapes, bowel, body size and tissue intensities (HU)."""

    organs: dict[str, tuple[Shape, ...]]
    duodenum: Tube
    colon: Tube
    shift: np.ndarray  # patient centre relative to the grid centre, mm
    body_scale: float  # 1 = average build; scales the body wall and the skeleton
    body_semi_axes: tuple[float, float]  # skin ellipse, mm (left-right, antero-posterior)
    fat_mm: float
    muscle_mm: float
    hu: dict[str, float]
    stomach_content: str
    noise_hu: float
    texture_hu: float


class _Drawer:
    """Draws per-case variations of the nominal shapes (position, size, orientation, deformation)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def jitter(self, sigma: float, limit: float, size: int = 3) -> np.ndarray:
        return np.clip(self.rng.normal(0.0, sigma, size=size), -limit, limit)

    def ellipsoid(
        self, center: ArrayLike, semi_axes: ArrayLike, rotation: ArrayLike, *,
        bend: float = 0.0, size: tuple[float, float] = (0.85, 1.15), wobble: float = 0.12, shift_sigma: float = 6.0,
    ) -> Ellipsoid:
        tilt = Rotation.from_rotvec(self.jitter(math.radians(7.0), math.radians(14.0))).as_matrix()
        return Ellipsoid(
            center=np.asarray(center, float) + self.jitter(shift_sigma, 2 * shift_sigma),
            semi_axes=np.asarray(semi_axes, float) * self.rng.uniform(*size, size=3),
            rotation=tilt @ np.asarray(rotation, float),
            wobble=Wobble.draw(self.rng, wobble),
            bend=bend * self.rng.uniform(0.7, 1.3),
        )

    def tube(
        self, points: ArrayLike, radii: ArrayLike, *, size: tuple[float, float] = (0.85, 1.15), wobble: float = 0.12, shift_sigma: float = 5.0
    ) -> Tube:
        points = np.asarray(points, float)
        moved = points + self.jitter(shift_sigma, 2 * shift_sigma) + self.jitter(shift_sigma / 2, shift_sigma, size=points.size).reshape(points.shape)
        return Tube(moved, np.asarray(radii, float) * self.rng.uniform(*size), Wobble.draw(self.rng, wobble))


def _kidney(drawer: _Drawer, side: float, center_z: float) -> Ellipsoid:
    """``side`` is +1 for the right kidney, -1 for the left (mirror images: the hilum faces the spine)."""
    return drawer.ellipsoid(
        (62.0 * side, -42.0, center_z), (28.0, 20.0, 55.0),
        frame(long_axis=(-0.2 * side, -0.1, 1.0), toward=(-side, 0.6, 0.0)),
        bend=0.35,
    )


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient. Nominal positions follow a supine adult at roughly T10-L4; sizes give voxel
    counts in the proportions of the shared CTs (liver largest; gallbladder and esophagus smallest)."""
    drawer = _Drawer(rng)
    uniform = rng.uniform
    content = str(rng.choice(STOMACH_CONTENTS, p=[0.35, 0.3, 0.25, 0.1]))
    distension = 0.75 if content == "collapsed" else uniform(0.9, 1.15)
    liver_shift = drawer.jitter(6.0, 12.0)
    organs: dict[str, tuple[Shape, ...]] = {
        "spleen": (drawer.ellipsoid((-82.0, -45.0, 38.0), (22.0, 45.0, 58.0), frame((-0.35, 0.8, -0.45), (0.8, 0.5, 0.0)), bend=0.35),),
        "kidney_right": (_kidney(drawer, 1.0, -24.0),),
        "kidney_left": (_kidney(drawer, -1.0, -8.0),),
        "gallbladder": (drawer.ellipsoid((42.0, 42.0, -28.0), (15.0, 14.0, 32.0), frame((0.1, 0.5, -0.85), (1.0, 0.0, 0.0)), bend=0.15, size=(0.85, 1.2)),),
        "esophagus": (drawer.tube([(2, -2, 140), (-6, 0, 105), (-20, 6, 78), (-36, 8, 62)], [10, 10, 10, 11], wobble=0.08, shift_sigma=3.0),),
        "pancreas": (drawer.tube([(30, 12, -22), (8, 20, -8), (-25, 10, 0), (-60, -14, 12)], [15, 10, 10, 8], wobble=0.15),),
        # The two lobes move together (one shift, small own jitter) so that they stay one organ.
        "liver": (
            drawer.ellipsoid(liver_shift + (68.0, 0.0, 15.0), (60.0, 78.0, 70.0), Rotation.from_euler("y", -20, degrees=True).as_matrix(), wobble=0.1, shift_sigma=2.0),
            drawer.ellipsoid(liver_shift + (0.0, 42.0, 33.0), (55.0, 36.0, 28.0), Rotation.from_euler("z", 15, degrees=True).as_matrix(), wobble=0.12, shift_sigma=2.0),
        ),
        "stomach": (drawer.tube(
            [(-50, 0, 62), (-66, 18, 32), (-55, 38, 2), (-22, 50, -18), (12, 42, -20)],
            np.array([27, 25, 21, 15, 10]) * distension, wobble=0.1,
        ),),
    }
    liver_hu = uniform(57.0, 65.0)
    kidney_hu = uniform(35.0, 40.0)  # parenchyma; the urine in the pelvis brings the mean to ~30-38
    fat_hu = uniform(-110.0, -90.0)
    hu = {
        "liver": liver_hu,
        "spleen": float(np.clip(liver_hu + uniform(-6.0, 4.0), 55.0, 65.0)),
        "kidney_right": kidney_hu + uniform(-1.5, 1.5),
        "kidney_left": kidney_hu + uniform(-1.5, 1.5),
        "gallbladder": uniform(10.0, 20.0),
        "esophagus": uniform(36.0, 44.0),
        "pancreas": uniform(36.0, 44.0),
        "stomach": uniform(36.0, 44.0),
        "urine": uniform(2.0, 12.0),
        "fluid": uniform(5.0, 20.0),
        "food": uniform(25.0, 60.0),
        "muscle": uniform(45.0, 55.0),
        "blood": uniform(38.0, 48.0),
        "fat": fat_hu,
        "visceral_fat": fat_hu + uniform(0.0, 12.0),
        "cancellous_bone": uniform(300.0, 400.0),
        "cortical_bone": uniform(650.0, 900.0),
        "csf": uniform(5.0, 15.0),
        "lung": uniform(-880.0, -820.0),
        "gas": uniform(-1000.0, -900.0),
    }
    body_scale = uniform(0.93, 1.07)
    return Anatomy(
        organs=organs,
        duodenum=drawer.tube([(12, 42, -20), (40, 25, -28), (45, 10, -55), (15, 5, -68), (-20, 5, -60)], [11, 11, 11, 10, 10]),
        colon=drawer.tube(
            [(95, 0, -125), (95, 5, -45), (75, 35, -40), (40, 68, -50), (-40, 68, -45), (-90, 20, -12), (-95, -10, -125)],
            [22, 22, 20, 18, 18, 20, 18], wobble=0.15,
        ),
        shift=drawer.jitter(5.0, 10.0),
        body_scale=body_scale,
        body_semi_axes=(150.0 * body_scale * uniform(0.97, 1.03), 110.0 * body_scale * uniform(0.97, 1.03)),
        fat_mm=uniform(10.0, 25.0),
        muscle_mm=uniform(8.0, 12.0),
        hu=hu,
        stomach_content=content,
        noise_hu=uniform(10.0, 20.0),
        texture_hu=uniform(2.0, 4.0),
    )
