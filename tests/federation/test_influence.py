"""Bounded influence: capped weights, clipped norms, and a global state that stays finite.

Unit tests of the bounds, and a poisoning run: 2 of 10 simulated clients send scaled
(×1000) or huge (3e38) updates and claim 10¹² examples. With the bounds (the default) the
final personalized metric stays within 2 points of the clean run; with ``--norm-bound 0``
the same attack costs far more, so the test can tell the bound from no bound.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from fedlora.errors import FedloraError
from fedlora.methods import METHODS
from fedlora.server.global_state import ClientResult, LinearGlobal, apply_if_finite
from fedlora.server.influence import InfluenceBounds, update_norm
from fedlora.simulations.simulate import simulate

from poisoning import ATTACKERS, poisoning_mod


def result(scale: float, weight: float = 10.0) -> ClientResult:
    update = {"a": np.full((2, 3), scale, np.float32), "b": np.full((4,), scale, np.float32)}
    return ClientResult({k: np.zeros_like(v) for k, v in update.items()}, update, weight, rank=2)


def test_a_weight_above_the_partition_size_is_capped():
    bounded, notes = InfluenceBounds(norm_bound=0).apply([result(1.0, 1e12), result(1.0, 7)], ["liar", "honest"], [50, 60])
    assert [r.weight for r in bounded] == [50.0, 7.0]
    assert notes == [{"client": "liar", "bound": "weight", "claimed": 1e12, "counted": 50.0}]


def test_scaled_and_huge_updates_are_clipped_to_the_bound_and_honest_ones_are_not():
    results = [result(1.0), result(1.1), result(0.9), result(1000.0), result(3e38)]
    bounded, notes = InfluenceBounds(norm_bound=3.0).apply(results, list("abcde"), [100] * 5)
    reference = update_norm(results[1].update)  # the median norm
    assert [update_norm(r.update) for r in bounded[:3]] == [update_norm(r.update) for r in results[:3]]
    for clipped in bounded[3:]:
        assert np.isfinite(update_norm(clipped.update)) and update_norm(clipped.update) == pytest.approx(3 * reference, rel=1e-6)
    assert [note["client"] for note in notes] == ["d", "e"]


def test_the_reference_remembers_earlier_rounds():
    bounds = InfluenceBounds(norm_bound=3.0)
    bounds.apply([result(1.0), result(1.0), result(1.0)], ["a", "b", "c"], [100] * 3)
    # a round in which every sampled update is scaled: the earlier round keeps the reference low
    bounded, notes = bounds.apply([result(50.0), result(50.0)], ["a", "b"], [100] * 2)
    assert len(notes) == 2 and all(update_norm(r.update) == pytest.approx(3 * update_norm(result(1.0).update)) for r in bounded)


def test_zero_turns_the_norm_bound_off():
    bounded, notes = InfluenceBounds(norm_bound=0).apply([result(1.0), result(1000.0)], ["a", "b"], [100, 100])
    assert notes == [] and update_norm(bounded[1].update) == update_norm(result(1000.0).update)


def test_a_round_whose_aggregate_would_overflow_is_refused_and_the_state_kept():
    start = {"a": np.full((2, 3), 3e38, np.float32), "b": np.ones(4, np.float32)}
    state = LinearGlobal(METHODS["fedit"], start, {}, scaling=1.0)
    overflowing = ClientResult(start, {"a": np.full((2, 3), 3e38, np.float32), "b": np.ones(4, np.float32)}, 1.0, rank=2)
    kept, errors, refused = apply_if_finite(state, [overflowing])
    assert "not finite in a" in refused and errors is None
    assert all(np.array_equal(kept.tensors[k], start[k]) for k in start)
    fine = ClientResult(start, {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}, 1.0, rank=2)
    applied, _, refused = apply_if_finite(kept, [fine])
    assert refused is None and np.array_equal(applied.tensors["b"], np.full(4, 2.0, np.float32))


# -- a poisoned federation ------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(small_settings, small_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("poisoning")
    settings = small_settings.replace(clients=10, rounds=3, fraction=1.0, personal=True)
    clean = simulate(settings.replace(out=str(out / "clean")), cpus=2)
    bounded = simulate(settings.replace(out=str(out / "bounded")), cpus=2, client_mods=[poisoning_mod])
    return out, settings, clean, bounded


@pytest.mark.e2e
def test_a_fifth_of_poisoners_costs_at_most_two_points_with_the_bounds(runs):
    out, _, clean, bounded = runs
    assert bounded["status"] == "completed"
    assert bounded["final"]["personal"]["mean"] >= clean["final"]["personal"]["mean"] - 0.02, (bounded["final"], clean["final"])
    rounds = [json.loads(line) for line in (Path(out) / "bounded" / bounded["run"] / "rounds.jsonl").read_text().splitlines()]
    for entry in (r for r in rounds if r["kind"] == "train"):
        assert entry["refused"] is None and entry["accepted"] == 10
        assert {(note["client"], note["bound"]) for note in entry["bounded"]} == {
            (f"digits:{p}", bound) for p in ATTACKERS for bound in ("weight", "norm")
        }  # fmt: skip


@pytest.mark.e2e
def test_without_the_norm_bound_the_same_attack_ends_the_federation(runs):
    out, settings, _, _ = runs
    with pytest.raises(FedloraError, match="round 2"):  # the global state blew up: every client fails
        simulate(settings.replace(out=str(out / "unbounded"), norm_bound=0.0), cpus=2, client_mods=[poisoning_mod])
