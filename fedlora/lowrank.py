"""Low-rank factors of an update ``ΔW = s·B·A``: the one truncation rule both the flexlora
server (what it sends each client) and the exporter (what that client last received) use.
"""

from __future__ import annotations

import numpy as np


def truncated_factors(product: np.ndarray, rank: int, scaling: float) -> tuple[np.ndarray, np.ndarray]:
    """Balanced factors (B, A) with s·B·A = the best rank-``rank`` approximation of
    ``product`` (m×n), zero-padded to exactly ``rank`` when the layer is smaller."""
    u, s, vh = np.linalg.svd(product / scaling, full_matrices=False)
    root = np.sqrt(s[:rank])
    b = u[:, :rank] * root  # (m, ≤r)
    a = root[:, None] * vh[:rank]  # (≤r, n)
    return pad_rank(b.astype(np.float32), rank, axis=1), pad_rank(a.astype(np.float32), rank, axis=0)


def pad_rank(factor: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """Zero-pad a factor to ``rank`` along ``axis`` (a layer smaller than the rank holds fewer
    singular values; the zero components change nothing)."""
    missing = rank - factor.shape[axis]
    if missing <= 0:
        return factor
    widths = [(0, 0)] * factor.ndim
    widths[axis] = (0, missing)
    return np.pad(factor, widths)
