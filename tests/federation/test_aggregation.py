"""Aggregation rules against hand-computed arrays, and exactness as a property."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlora.methods import METHODS
from fedlora.lowrank import truncated_factors
from fedlora.server.aggregation import (
    layer_products,
    relative_errors,
    weighted_mean_update,
    weighted_products,
)
from fedlora.server.global_state import ClientResult, LinearGlobal, ProductGlobal

A, B, R = "l.adapters.global.lora_A", "l.adapters.global.lora_B", "l.adapters.global.lora_R"


def test_weighted_mean_update_by_hand():
    # global 1; client deltas +2 (weight 1) and −1 (weight 3): 1 + (2·1 − 1·3)/4 = 0.75
    result = weighted_mean_update({"x": np.array([1.0], np.float32)}, [{"x": np.array([2.0])}, {"x": np.array([-1.0])}], [1, 3])
    assert result["x"].tolist() == [0.75]


def test_a_tensor_nobody_sent_keeps_its_value():
    result = weighted_mean_update({"x": np.ones(2, np.float32), "y": np.zeros(2, np.float32)}, [{"x": np.ones(2)}], [1])
    assert result["x"].tolist() == [2, 2] and result["y"].tolist() == [0, 0]


def test_fedit_averages_a_and_b_separately_and_measures_the_error():
    # Two clients, scaling 1. Client 1: B=[1,0]ᵀ, A=[1,0]; client 2: B=[0,1]ᵀ, A=[0,1]; equal weights.
    # Exact: ½(B1A1 + B2A2) = ½·I. fedit: B̄ = [½,½]ᵀ, Ā = [½,½] → B̄Ā = ¼·ones.
    # Error ‖¼·ones − ½I‖_F / ‖½I‖_F = ‖[[-¼,¼],[¼,-¼]]‖ / (√2/2) = (½)/(√2/2) = 1/√2.
    zero = {A: np.zeros((1, 2), np.float32), B: np.zeros((2, 1), np.float32)}
    state = LinearGlobal(METHODS["fedit"], zero, {}, scaling=1.0)
    clients = [
        ClientResult(zero, {A: np.array([[1.0, 0.0]]), B: np.array([[1.0], [0.0]])}, 1.0, 1),
        ClientResult(zero, {A: np.array([[0.0, 1.0]]), B: np.array([[0.0], [1.0]])}, 1.0, 1),
    ]
    errors = state.apply(clients)
    np.testing.assert_allclose(state.tensors[A], [[0.5, 0.5]])
    np.testing.assert_allclose(state.tensors[B], [[0.5], [0.5]])
    assert errors["l"] == pytest.approx(1 / np.sqrt(2))


def test_ffa_averages_b_only_and_is_exact_by_hand():
    a = np.array([[1.0, 2.0]], np.float32)  # frozen and shared
    state = LinearGlobal(METHODS["ffa"], {B: np.zeros((2, 1), np.float32)}, {A: a}, scaling=2.0)
    clients = [
        ClientResult({B: np.zeros((2, 1))}, {B: np.array([[1.0], [3.0]])}, 1.0, 1),
        ClientResult({B: np.zeros((2, 1))}, {B: np.array([[3.0], [1.0]])}, 3.0, 1),
    ]
    errors = state.apply(clients)
    np.testing.assert_allclose(state.tensors[B], [[2.5], [1.5]])  # (1·1 + 3·3)/4, (1·3 + 3·1)/4
    assert errors["l"] < 1e-7


def test_fedsa_averages_a_and_reports_no_error():
    state = LinearGlobal(METHODS["fedsa"], {A: np.zeros((1, 2), np.float32)}, {}, scaling=1.0)
    errors = state.apply([ClientResult({A: np.zeros((1, 2))}, {A: np.array([[2.0, 4.0]])}, 1.0, 1)])
    assert errors is None
    np.testing.assert_allclose(state.tensors[A], [[2.0, 4.0]])



@settings(max_examples=60, deadline=None)
@given(m=st.integers(2, 6), n=st.integers(2, 6), r=st.integers(1, 2), clients=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_ffa_and_core_aggregation_is_exact(m, n, r, clients, seed):
    """The product of the aggregate equals the aggregate of the products."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 3.0, clients).tolist()
    a, b = rng.normal(size=(r, n)).astype(np.float32), rng.normal(size=(m, r)).astype(np.float32)
    ffa = LinearGlobal(METHODS["ffa"], {B: np.zeros((m, r), np.float32)}, {A: a}, scaling=0.5)
    ffa_errors = ffa.apply([ClientResult({B: np.zeros((m, r))}, {B: rng.normal(size=(m, r))}, w, r) for w in weights])
    core = LinearGlobal(METHODS["core"], {R: np.zeros((r, r), np.float32)}, {A: a, B: b}, scaling=0.5)
    core_errors = core.apply([ClientResult({R: np.zeros((r, r))}, {R: rng.normal(size=(r, r))}, w, r) for w in weights])
    assert ffa_errors["l"] < 1e-5 and core_errors["l"] < 1e-5


def test_flexlora_hands_each_client_the_truncation_at_its_rank():
    m, n = 5, 4
    rng = np.random.default_rng(0)

    def initial(rank):
        return {A: rng.normal(size=(rank, n)).astype(np.float32), B: np.zeros((m, rank), np.float32)}

    init = {1: initial(1), 3: initial(3)}
    state = ProductGlobal(lambda rank, targets: init[rank], scaling=2.0)
    # round 1: nothing trained yet, clients start from the shared initialisation at their rank
    assert state.tensors_for(3)[A].shape == (3, n) and np.array_equal(state.tensors_for(1)[A], init[1][A])
    updates = {rank: {A: rng.normal(size=(rank, n)), B: rng.normal(size=(m, rank))} for rank in (1, 3)}
    results = [ClientResult(init[rank], updates[rank], weight, rank) for rank, weight in ((1, 1.0), (3, 2.0))]
    errors = state.apply(results)
    # the aggregate is exact: Σ p_k·s·B_k·A_k
    expected = sum(w / 3.0 * 2.0 * (init[r][B] + updates[r][B]) @ (init[r][A] + updates[r][A]) for r, w in ((1, 1.0), (3, 2.0)))
    np.testing.assert_allclose(state.products["l"], expected, rtol=1e-6, atol=1e-8)
    # each client receives the best approximation of its rank (Eckart–Young)
    for rank in (1, 3):
        sent = state.tensors_for(rank)
        assert sent[A].shape == (rank, n) and sent[B].shape == (m, rank)
        u, s, vh = np.linalg.svd(expected)
        best = (u[:, :rank] * s[:rank]) @ vh[:rank]
        np.testing.assert_allclose(2.0 * sent[B] @ sent[A], best, rtol=1e-4, atol=1e-5)
    # the error is the weighted mean truncation error; rank 3 loses less than rank 1
    s = np.linalg.svd(expected, compute_uv=False)
    loss = {rank: np.sqrt(np.sum(s[rank:] ** 2)) / np.sqrt(np.sum(s**2)) for rank in (1, 3)}
    assert errors["l"] == pytest.approx((loss[1] * 1 + loss[3] * 2) / 3, rel=1e-4)


def test_truncated_factors_are_balanced():
    product = np.diag([4.0, 1.0, 0.25])
    b, a = truncated_factors(product, 2, scaling=1.0)
    np.testing.assert_allclose(np.linalg.norm(b, axis=0), np.linalg.norm(a, axis=1), rtol=1e-6)
    np.testing.assert_allclose(b @ a, np.diag([4.0, 1.0, 0.0]), atol=1e-6)


def test_layer_products_and_relative_errors_by_hand():
    tensors = {A: np.array([[1.0, 0.0]]), B: np.array([[2.0], [0.0]]), R: np.array([[3.0]])}
    product = layer_products(tensors, scaling=0.5)["l"]  # 0.5 · B·R·A = [[3, 0], [0, 0]]
    np.testing.assert_allclose(product, [[3.0, 0.0], [0.0, 0.0]])
    assert weighted_products([{"l": np.ones((1, 1))}, {"l": 3 * np.ones((1, 1))}], [1, 1])["l"][0, 0] == 2.0
    assert relative_errors({"l": np.array([[3.0, 4.0]])}, {"l": np.array([[3.0, 0.0]])})["l"] == pytest.approx(4 / 3)
