"""Calibration maths: statistics under affine maps, the balanced intermediate (exact and
optimal), and GPTQ rounding (never worse than nearest on the data it is given)."""

from __future__ import annotations

import numpy as np
import pytest

from fedlora.device_runtime import quantize_linear
from fedlora.export.calibration import (
    ChannelRange,
    Moments,
    _spread_rotation,
    balance_intermediate,
    round_factors_gptq,
    round_weights_gptq,
)
from fedlora.device_runtime.quantization import dequantize_symmetric, quantize_symmetric


def test_statistics_follow_a_per_channel_affine_map():
    x = np.random.default_rng(0).normal(size=(500, 3)) * [1.0, 3.0, 0.5] + [2.0, -1.0, 0.0]
    scale, offset = np.array([2.0, 0.5, 4.0]), np.array([1.0, -2.0, 0.25])
    ranges, moments = ChannelRange(3), Moments(3)
    ranges.update(x)
    moments.update(x[:200])
    moments.update(x[200:])  # running sums over batches
    z = (x - offset) / scale
    mapped = ranges.affine(scale, offset)
    np.testing.assert_allclose([mapped.min, mapped.max], [z.min(0), z.max(0)])
    mapped = moments.affine(scale, offset)
    np.testing.assert_allclose(mapped.mean, z.mean(0), atol=1e-12)
    np.testing.assert_allclose(mapped.second, z.T @ z / len(z), atol=1e-12)
    np.testing.assert_allclose(mapped.covariance, np.cov(z.T, bias=True), atol=1e-12)


def test_spread_rotation_golden():
    """diag(3, 1) rotated by 45° has (2, 2) on its diagonal."""
    r = _spread_rotation(np.array([3.0, 1.0]))
    np.testing.assert_allclose(np.abs(r), np.full((2, 2), np.sqrt(0.5)), atol=1e-12)
    np.testing.assert_allclose(np.diag(r @ np.diag([3.0, 1.0]) @ r.T), [2.0, 2.0])


@pytest.mark.parametrize("seed", range(5))
def test_spread_rotation_equalizes_any_spectrum(seed):
    rng = np.random.default_rng(seed)
    lam = rng.exponential(size=rng.integers(2, 40)) ** 3
    r = _spread_rotation(lam)
    np.testing.assert_allclose(r @ r.T, np.eye(lam.size), atol=1e-10)
    np.testing.assert_allclose(np.diag(r @ np.diag(lam) @ r.T), np.full(lam.size, lam.mean()), rtol=1e-9)


def _problem(seed: int, out: int = 12, rank: int = 5, inp: int = 9):
    """Unbalanced factors (a merged adapter's scale differs from the base's), correlated
    inputs and a low-rank-ish output weighting."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(out, rank)) * np.geomspace(0.1, 10, rank)
    v = rng.normal(size=(rank, inp))
    mix = rng.normal(size=(inp, inp))
    covariance = mix @ mix.T / inp
    g = rng.normal(size=(out, 3))
    sensitivity = g @ g.T + 0.01 * np.eye(out)
    return u, v, covariance, sensitivity


def _rounding_cost(u: np.ndarray, v: np.ndarray, covariance: np.ndarray, sensitivity: np.ndarray) -> float:
    """Σ_j c_j·s_j: intermediate variance times output weight, channel by channel — the
    output error of rounding each intermediate channel at a step ∝ its own spread."""
    return float(np.diag(v @ covariance @ v.T) @ np.diag(u.T @ sensitivity @ u))


@pytest.mark.parametrize("seed", range(6))
def test_balanced_intermediate_is_exact_and_reaches_the_bound(seed):
    u, v, covariance, sensitivity = _problem(seed)
    u2, v2 = balance_intermediate(u, v, covariance, sensitivity)
    np.testing.assert_allclose(u2 @ v2, u @ v, rtol=1e-9, atol=1e-9)
    c, s = np.diag(v2 @ covariance @ v2.T), np.diag(u2.T @ sensitivity @ u2)
    # (Σ λ)² / r with λ the singular values of S^½·C^½, i.e. the square roots of the
    # eigenvalues of S·C (C, S the intermediate's covariance and output weight)
    lam = np.sqrt(np.clip(np.linalg.eigvals((u.T @ sensitivity @ u) @ (v @ covariance @ v.T)).real, 0, None))
    bound = lam.sum() ** 2 / lam.size
    np.testing.assert_allclose(c, np.full(c.size, lam.sum() / lam.size), rtol=1e-6)  # balanced and spread
    np.testing.assert_allclose(s, c, rtol=1e-6)
    assert _rounding_cost(u2, v2, covariance, sensitivity) == pytest.approx(bound, rel=1e-6)
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):  # no other basis of the intermediate does better
        t = rng.normal(size=(u.shape[1],) * 2)
        assert _rounding_cost(u @ np.linalg.inv(t), t @ v, covariance, sensitivity) >= bound * (1 - 1e-9)


def test_balanced_intermediate_plain_mse_by_default():
    u, v, covariance, _ = _problem(7)
    u2, v2 = balance_intermediate(u, v, covariance)
    np.testing.assert_allclose(np.diag(u2.T @ u2), np.diag(v2 @ covariance @ v2.T), rtol=1e-6)


def test_balanced_intermediate_survives_dead_directions():
    """A zero adapter B (``U = [U_base | 0]``) makes the output weight singular."""
    u, v, covariance, sensitivity = _problem(3)
    u[:, -2:] = 0.0
    u2, v2 = balance_intermediate(u, v, covariance, sensitivity)
    assert np.all(np.isfinite(u2)) and np.all(np.isfinite(v2))
    np.testing.assert_allclose(u2 @ v2, u @ v, rtol=1e-6, atol=1e-9)


def test_gptq_golden_correlated_inputs():
    """Inputs 0 and 1 always equal: 0.4 + 0.4 is better stored as 0 + 1 than as 0 + 0."""
    weights = np.array([[0.4, 0.4, 127.0]])  # scale 1: the int8 grid is the integers
    second = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    nearest, scale = quantize_symmetric(weights)
    q, gptq_scale = round_weights_gptq(weights, second)
    assert nearest.tolist() == [[0, 0, 127]] and scale.tolist() == gptq_scale.tolist() == [1.0]
    assert sorted(q[0, :2].tolist()) == [0, 1] and q[0, 2] == 127


def test_gptq_is_nearest_rounding_for_uncorrelated_inputs():
    weights = np.random.default_rng(0).normal(size=(6, 10))
    second = np.diag(np.random.default_rng(1).uniform(0.5, 2.0, size=10))
    for moment in (second, np.zeros((10, 10))):
        q, scale = round_weights_gptq(weights, moment)
        expected_q, expected_scale = quantize_symmetric(weights)
        np.testing.assert_array_equal(q, expected_q)
        np.testing.assert_array_equal(scale, expected_scale)


@pytest.mark.parametrize("seed", range(5))
def test_gptq_output_error_is_below_nearest(seed):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(16, 24)) * rng.uniform(0.1, 2.0, size=24)
    mix = rng.normal(size=(24, 24)) + 2.0  # strongly correlated, non-zero mean
    x = rng.normal(size=(2000, 24)) @ mix
    second = x.T @ x / len(x)

    def output_error(q, scale):
        error = weights - dequantize_symmetric(q, scale)
        return float(np.trace(error @ second @ error.T))

    q, scale = round_weights_gptq(weights, second)
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    assert output_error(q, scale) < 0.8 * output_error(*quantize_symmetric(weights))


def test_quantize_linear_rounds_each_fc_for_the_input_it_sees():
    rng = np.random.default_rng(4)
    v, u = rng.normal(size=(4, 8)), rng.normal(size=(6, 4))
    x = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8))
    second = x.T @ x / len(x)
    ranges = [(-5.0, 5.0), (-9.0, 9.0), (-20.0, 20.0)]
    first, last = quantize_linear([v, u], np.zeros(6), ranges, weights=round_factors_gptq([v, u], second))
    np.testing.assert_array_equal(first.weights, round_weights_gptq(v, second)[0])
    np.testing.assert_array_equal(last.weights, round_weights_gptq(u, v @ second @ v.T)[0])
    plain_first, _ = quantize_linear([v, u], np.zeros(6), ranges)
    np.testing.assert_array_equal(plain_first.weights, quantize_symmetric(v)[0])


def test_balanced_intermediate_without_signal_keeps_the_factors():
    u, v, covariance, sensitivity = _problem(5)
    u2, v2 = balance_intermediate(u, v, np.zeros_like(covariance), sensitivity)  # a constant input
    np.testing.assert_array_equal(u2, u)
    np.testing.assert_array_equal(v2, v)
    u3, v3 = balance_intermediate(u, v, covariance, np.zeros_like(sensitivity))  # falls back to plain MSE
    np.testing.assert_allclose(u3 @ v3, u @ v, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.diag(u3.T @ u3), np.diag(v3 @ covariance @ v3.T), rtol=1e-6)
