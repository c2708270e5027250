"""Bilinear rotation of small images: identity, quarter turns, and interpolation by hand."""

import numpy as np
import pytest

from fedlora.tasks.rotation import rotate_bilinear


@pytest.fixture
def images():
    return np.random.default_rng(0).random((3, 8, 8))


def test_zero_degrees_is_the_identity(images):
    np.testing.assert_allclose(rotate_bilinear(images, 0.0), images, atol=1e-12)


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_quarter_turns_match_numpy_rot90(images, quarter_turns):
    expected = np.rot90(images, k=quarter_turns, axes=(1, 2))
    np.testing.assert_allclose(rotate_bilinear(images, 90.0 * quarter_turns), expected, atol=1e-9)


def test_45_degrees_by_hand():
    # Output pixel (row 3, col 4) is offset (y, x) = (-0.5, 0.5) from the centre (3.5, 3.5);
    # it samples the input at x = cos·0.5 − sin·(−0.5) + 3.5 = 3.5 + √2/2, y = 3.5. On an
    # image whose value is its column, bilinear interpolation returns that x exactly.
    columns = np.tile(np.arange(8.0), (8, 1))[None]
    assert rotate_bilinear(columns, 45.0)[0, 3, 4] == pytest.approx(3.5 + np.sqrt(2) / 2)
    # Output (1, 0), offset (−2.5, −3.5), samples y = sin·(−3.5) + cos·(−2.5) + 3.5 = 3.5 − 3√2,
    # between the zero border (row −1) and row 0: weight 4.5 − 3√2 on a row of ones.
    ones = np.ones((1, 8, 8))
    rotated = rotate_bilinear(ones, 45.0)[0]
    assert rotated[1, 0] == pytest.approx(4.5 - 3 * np.sqrt(2))
    assert rotated[0, 0] == 0.0  # the corner samples y = 3.5 − 3.5√2 < −1: outside
