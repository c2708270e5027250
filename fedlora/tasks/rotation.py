"""Rotating small images with bilinear interpolation, in numpy.

Used by ``digits`` to give each client its own view of the data. Written out rather than
taken from scipy so the arithmetic is visible and the task needs numpy only.
"""

from __future__ import annotations

import numpy as np


def rotate_bilinear(images: np.ndarray, degrees: float) -> np.ndarray:
    """``images`` (N, H, W) rotated counter-clockwise by ``degrees`` about their centre.

    Counter-clockwise as displayed with row 0 at the top, so 90° equals ``np.rot90``.
    Each output pixel samples the input at the inversely rotated position, blending the
    four nearest pixels; positions outside the image read as 0 (background).
    """
    n, height, width = images.shape
    theta = np.deg2rad(degrees)
    cos, sin = np.cos(theta), np.sin(theta)
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    rows, cols = np.mgrid[0:height, 0:width]
    y, x = rows - centre_y, cols - centre_x  # (H, W) output offsets from the centre
    source_x = cos * x - sin * y + centre_x  # (H, W) where each output pixel comes from
    source_y = sin * x + cos * y + centre_y
    # pad by one zero pixel, so every neighbour of a position within one pixel of the image
    # is addressable and everything further out clamps into the zero border
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    y0 = np.floor(source_y)
    x0 = np.floor(source_x)
    fy, fx = source_y - y0, source_x - x0  # (H, W) fractional parts, in [0, 1)
    out = np.zeros(images.shape, dtype=np.float64)
    for dy, weight_y in ((0, 1 - fy), (1, fy)):
        for dx, weight_x in ((0, 1 - fx), (1, fx)):
            r = np.clip(y0 + dy + 1, 0, height + 1).astype(np.int64)  # +1: the padding
            c = np.clip(x0 + dx + 1, 0, width + 1).astype(np.int64)
            out += weight_y * weight_x * padded[:, r, c]  # (N, H, W)
    return out.astype(images.dtype, copy=False)
