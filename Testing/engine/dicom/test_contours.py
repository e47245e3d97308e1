"""Voxel-edge contours and their even-odd fill (ciss_engine/dicom/contours.py), with hand-made shapes."""
from __future__ import annotations

import numpy as np
import pytest

from ciss_engine.dicom.contours import mask_to_polygons, polygons_to_mask, signed_area


def test_single_voxel_is_a_unit_square_around_its_centre():
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 2] = True
    (polygon,) = mask_to_polygons(mask)
    assert sorted(map(tuple, polygon.tolist())) == [(0.5, 1.5), (0.5, 2.5), (1.5, 1.5), (1.5, 2.5)]
    assert signed_area(polygon) == 1.0  # counter-clockwise: an outer boundary


def test_hole_is_a_separate_clockwise_contour():
    mask = np.zeros((7, 7), dtype=bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    polygons = mask_to_polygons(mask)
    # 5×5 voxels outside, one voxel inside; each boundary is a rectangle: 4 corners.
    assert sorted(signed_area(p) for p in polygons) == [-1.0, 25.0]
    assert [len(p) for p in polygons] == [4, 4]
    np.testing.assert_array_equal(polygons_to_mask(polygons, mask.shape), mask)


def test_voxels_touching_at_a_corner_give_two_squares():
    mask = np.zeros((2, 2), dtype=bool)
    mask[0, 0] = mask[1, 1] = True
    polygons = mask_to_polygons(mask)
    assert [signed_area(p) for p in polygons] == [1.0, 1.0]
    assert all(len(p) == 4 for p in polygons)


def test_l_shape_keeps_only_its_six_corners():
    mask = np.array([[1, 0], [1, 1]], dtype=bool)  # i = 0: j = 0; i = 1: j = 0, 1
    (polygon,) = mask_to_polygons(mask)
    assert len(polygon) == 6 and signed_area(polygon) == 3.0


def test_even_odd_fill_of_nested_squares_is_a_ring():
    outer = np.array([[-0.5, -0.5], [4.5, -0.5], [4.5, 4.5], [-0.5, 4.5]])
    inner = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5], [0.5, 3.5]])  # same winding: XOR still makes a hole
    mask = polygons_to_mask([outer, inner], (5, 5))
    expected = np.ones((5, 5), dtype=bool)
    expected[1:4, 1:4] = False
    np.testing.assert_array_equal(mask, expected)


def test_fill_covers_centres_inside_a_slanted_triangle():
    # Hypotenuse x + y = 4.01, bottom edge y = -0.01, left edge x = 0 through the centres i = 0.
    triangle = np.array([[0.0, -0.01], [4.02, -0.01], [0.0, 4.02]])
    mask = polygons_to_mask([triangle], (5, 5))
    i, j = np.indices((5, 5))
    np.testing.assert_array_equal(mask, (i + j <= 4) & (i >= 1))  # i = 0 sits on the left edge x = 0: outside (half-open)


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_round_trip_exactly(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((23, 17)) < 0.45
    polygons = mask_to_polygons(mask)
    assert min(len(p) for p in polygons) >= 4  # never a 1- or 2-point contour
    np.testing.assert_array_equal(polygons_to_mask(polygons, mask.shape), mask)
    assert sum(signed_area(p) for p in polygons) == mask.sum()  # outer areas minus holes = voxel count
