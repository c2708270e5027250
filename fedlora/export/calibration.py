"""Calibration statistics and weight choices of the exporter (host side, numpy only).

The device runtime quantizes a linear layer from its float factors and the calibrated
range of every tensor on the way (:func:`fedlora.device_runtime.quantize_linear`, as
TFLite's converter does). What it is given is chosen here, on the host:

* :class:`ChannelRange` and :class:`Moments` collect the per-channel ranges and the
  second moments of activations over calibration batches;
* :func:`balance_intermediate` picks the basis of a factorized layer's int8 intermediate
  that minimizes the output error its rounding causes;
* :func:`round_weights_gptq` (one FC) and :func:`round_factors_gptq` (a layer's chain)
  round each weight up or down to minimize the FC's output error rather than its own.

All of them choose *which* int8 numbers to store: the kernels, and their bit-exactness,
are untouched. How the exporter uses them, and what they gain, is in
``docs/calibration.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedlora.device_runtime.quantization import QMAX, quantize_symmetric, round_half_away

__all__ = ["GPTQ_DAMPING", "ChannelRange", "Moments", "balance_intermediate", "round_factors_gptq", "round_weights_gptq"]

#: GPTQ's dampening, a fraction of the mean diagonal of the input second moment added to
#: its diagonal (Frantar et al. 2023 use 1%): keeps the Cholesky factor well conditioned
#: when inputs are correlated or some never vary.
GPTQ_DAMPING = 0.01


class ChannelRange:
    """Running per-channel min and max of an activation ``(..., channels)``."""

    def __init__(self, channels: int):
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.samples = 0  # rows seen

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.min.size)
        if x.size:
            np.minimum(self.min, x.min(axis=0), out=self.min)
            np.maximum(self.max, x.max(axis=0), out=self.max)
        self.samples += x.shape[0]

    @property
    def seen(self) -> bool:
        return self.samples > 0

    def affine(self, scale: np.ndarray, offset: np.ndarray) -> ChannelRange:
        """The ranges of ``(x − offset) / scale`` (per channel, ``scale > 0``)."""
        out = ChannelRange(self.min.size)
        out.min, out.max, out.samples = (self.min - offset) / scale, (self.max - offset) / scale, self.samples
        return out

    def tensor_range(self) -> tuple[float, float]:
        """Per-tensor ``(min, max)`` over every channel."""
        if not self.seen:
            raise ValueError("no calibration data reached this activation")
        return float(self.min.min()), float(self.max.max())


class Moments:
    """Running mean and second moment ``E[x xᵀ]`` of an activation ``(..., channels)``
    (float64 sums, so millions of rows lose nothing that matters)."""

    def __init__(self, channels: int):
        self.sum = np.zeros(channels)
        self.outer = np.zeros((channels, channels))
        self.samples = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.sum.size)
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        self.samples += x.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.samples, 1)

    @property
    def second(self) -> np.ndarray:
        """``E[x xᵀ]`` (channels, channels)."""
        return self.outer / max(self.samples, 1)

    @property
    def covariance(self) -> np.ndarray:
        mean = self.mean
        return self.second - np.outer(mean, mean)

    def affine(self, scale: np.ndarray, offset: np.ndarray) -> Moments:
        """The moments of ``(x − offset) / scale`` (per channel)."""
        out = Moments(self.sum.size)
        mean, second = self.mean, self.second
        shifted = second - np.outer(offset, mean) - np.outer(mean, offset) + np.outer(offset, offset)
        out.samples = self.samples
        out.sum = (mean - offset) / scale * self.samples
        out.outer = shifted / np.outer(scale, scale) * self.samples
        return out


def balance_intermediate(
    u: np.ndarray, v: np.ndarray, input_covariance: np.ndarray, output_sensitivity: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Factors ``(u·T⁻¹, T·v)`` of ``u·v`` whose intermediate ``T·v·x`` loses least to
    int8 rounding.

    u: (out, r), v: (r, in), input_covariance: (in, in) of ``x``; output_sensitivity:
    (out, out) weights ``G`` of the output error, ``E[δyᵀ G δy]`` (identity: plain MSE).

    Model: the intermediate gets one int8 scale, and each channel is then equalized to
    span the full int8 range, so channel ``j`` is rounded with an error of variance
    proportional to its own variance ``c_j``; that error reaches the output with weight
    ``s_j``, the ``j``-th diagonal entry of ``T⁻ᵀ·uᵀ·G·u·T⁻¹``. The output error is
    ``∝ Σ_j c_j·s_j``, minimized over invertible ``T`` at ``(Σ_j λ_j)² / r``, where
    ``λ_j`` are the singular values of ``S^½·C^½`` (``C = v·Σ_x·vᵀ``, ``S = uᵀ·G·u``):

    1. *balance* (as in balanced truncation): ``T₀ = Λ^-½·Pᵀ·L_Sᵀ`` with ``C = L_C·L_Cᵀ``,
       ``S = L_S·L_Sᵀ`` and ``L_Sᵀ·L_C = P·Λ·Qᵀ``, so that ``T₀·C·T₀ᵀ = T₀⁻ᵀ·S·T₀⁻¹ = Λ``;
    2. *spread*: an orthogonal ``R`` with ``diag(R·Λ·Rᵀ)`` constant (Givens rotations),
       so every channel carries the same share — ``T = R·T₀``.

    A plain random rotation (QuaRot-style) reaches the same optimum only when the
    factors are already balanced and ``G`` is the identity; merged adapters and
    sensitivity weights break both.
    """
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    hidden = v @ input_covariance @ v.T  # (r, r)
    sensitivity = u.T @ (u if output_sensitivity is None else output_sensitivity @ u)  # (r, r)
    if not np.trace(sensitivity) > 0:  # no output the weighting cares about: plain MSE
        sensitivity = u.T @ u
    if not (np.trace(hidden) > 0 and np.trace(sensitivity) > 0):
        return u, v  # nothing flows through the intermediate: every basis is as good
    l_c, l_s = _psd_factor(hidden), _psd_factor(sensitivity)
    p, lam, q_t = np.linalg.svd(l_s.T @ l_c)
    lam = np.maximum(lam, lam[0] * 1e-12)
    t = (p / np.sqrt(lam)).T @ l_s.T
    t_inv = l_c @ q_t.T / np.sqrt(lam)
    r = _spread_rotation(lam)
    return u @ t_inv @ r.T, r @ t @ v


def _psd_factor(a: np.ndarray) -> np.ndarray:
    """``L`` with ``L·Lᵀ = a`` for a symmetric positive semi-definite ``a``, eigenvalues
    floored at 1e-9 of the largest so that the factor is invertible."""
    w, q = np.linalg.eigh((a + a.T) / 2)
    top = max(float(w.max()), 1e-300)
    return q * np.sqrt(np.maximum(w, top * 1e-9))


def _spread_rotation(lam: np.ndarray) -> np.ndarray:
    """Orthogonal ``R`` with ``diag(R·diag(lam)·Rᵀ)`` equal to ``mean(lam)``: each Givens
    rotation between the currently largest and smallest diagonal entries sets one of them
    to the mean, so ``len(lam) − 1`` rotations suffice."""
    size = lam.size
    a, r = np.diag(lam.astype(np.float64)), np.eye(size)
    target = float(lam.mean())
    for _ in range(size - 1):
        d = np.diag(a)
        i, j = int(np.argmax(d)), int(np.argmin(d))
        if d[i] - d[j] <= 1e-12 * target:
            break
        # a_ii after rotating by θ: (a_ii + a_jj)/2 + (a_ii − a_jj)/2·cos 2θ + a_ij·sin 2θ
        half, amplitude = (d[i] + d[j]) / 2, np.hypot((d[i] - d[j]) / 2, a[i, j])
        phase = np.arctan2(a[i, j], (d[i] - d[j]) / 2)
        theta = (np.arccos(np.clip((target - half) / amplitude, -1.0, 1.0)) + phase) / 2
        g = np.eye(size)
        g[i, i] = g[j, j] = np.cos(theta)
        g[i, j], g[j, i] = np.sin(theta), -np.sin(theta)
        a, r = g @ a @ g.T, g @ r
    return r


def round_weights_gptq(weights: np.ndarray, input_second_moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights, rounded to minimize the output error
    ``E‖(W − s·q)·x‖²`` rather than each weight's own error (GPTQ, Frantar et al. 2023).

    weights: (out, in) float; input_second_moment: ``E[x xᵀ]`` (in, in) of the FC's
    input. Scales are those of
    :func:`~fedlora.device_runtime.quantization.quantize_symmetric` (``max|w|/127`` per
    row), so only which int8 values the weights take changes, not their scales. Columns
    are rounded in order of decreasing input energy; each rounding error is pushed onto
    the columns not yet rounded through the Cholesky factor of the (damped) inverse
    second moment. Returns ``(q, scale)`` as ``quantize_symmetric`` does.
    """
    _, scale = quantize_symmetric(weights)
    w = np.array(weights, dtype=np.float64)
    hessian = np.array(input_second_moment, dtype=np.float64)
    energy = np.diag(hessian)
    if not energy.any():
        return quantize_symmetric(weights)  # the input is always zero: nothing to trade
    order = np.argsort(-energy, kind="stable")
    w, hessian = w[:, order], hessian[np.ix_(order, order)]
    hessian[np.diag_indices_from(hessian)] += GPTQ_DAMPING * energy.mean()
    upper = np.linalg.cholesky(np.linalg.inv(hessian)).T  # H⁻¹ = upperᵀ·upper
    step = scale.astype(np.float64)
    q = np.empty(w.shape, dtype=np.int8)
    for i in range(w.shape[1]):
        column = np.clip(round_half_away(w[:, i] / step), -QMAX, QMAX)
        q[:, i] = column
        error = (w[:, i] - column * step) / upper[i, i]
        w[:, i + 1 :] -= np.outer(error, upper[i, i + 1 :])
    return q[:, np.argsort(order)], scale


def round_factors_gptq(
    factors: Sequence[np.ndarray], input_second_moment: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`round_weights_gptq` for each FC of a chain ``factors`` (applied in order,
    as :func:`fedlora.device_runtime.quantize_linear` takes them): FC ``i + 1`` sees
    ``F_i·…·F_0·x``, whose second moment follows from ``input_second_moment`` (``E[x xᵀ]``
    of the chain's input). Returns ``(q, scale)`` per factor, for ``quantize_linear``'s
    ``weights``."""
    second = input_second_moment
    rounded = []
    for weights in factors:
        rounded.append(round_weights_gptq(weights, second))
        second = weights @ second @ np.transpose(weights)
    return rounded
