"""The failure policy: clients that miss rounds, rounds with too few replies, and a run
that completes (degraded, and says so) at 30% dropout."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fedlora.client.dropout import drops_out
from fedlora.errors import FedloraError
from fedlora.server.participation import Participation
from fedlora.simulations.simulate import simulate


def test_a_client_may_miss_rounds_in_a_row_up_to_the_limit_and_come_back():
    participation = Participation(expected=3, min_clients=0.5, taking_part={1, 2, 3}, max_absences=2)
    participation.miss(1, "a", "round 1", "crashed")
    participation.miss(1, "a", "round 2", "crashed")
    assert 1 in participation.taking_part and not participation.lost and len(participation.absences) == 2
    participation.answered(1)  # back in round 3
    participation.miss(1, "a", "round 4", "crashed")
    assert 1 in participation.taking_part  # the count starts again
    participation.miss(1, "a", "round 5", "crashed")
    participation.miss(1, "a", "round 6", "crashed")  # a third in a row
    assert 1 not in participation.taking_part and participation.lost[0]["stage"] == "round 6"
    assert participation.status == "degraded"


def test_by_default_the_first_miss_loses_the_client():
    participation = Participation(expected=2, min_clients=1.0, taking_part={1, 2})
    participation.miss(2, "b", "round 1", "crashed")
    assert participation.lost and 2 not in participation.taking_part
    with pytest.raises(FedloraError, match="b \\(round 1\\): crashed"):
        participation.check()


ROUNDS, CLIENTS, DROPOUT = 4, 10, 0.3


@pytest.fixture(scope="module")
def dropped(small_settings, small_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("dropout")
    settings = small_settings.replace(
        clients=CLIENTS, rounds=ROUNDS, fraction=1.0, dropout=DROPOUT, max_absences=ROUNDS, min_replies=0.7, out=str(out)
    )
    summary = simulate(settings, cpus=2)
    rounds = [json.loads(line) for line in (Path(out) / summary["run"] / "rounds.jsonl").read_text().splitlines()]
    return settings, summary, rounds


@pytest.mark.e2e
def test_at_30_percent_dropout_the_run_completes_degraded_with_the_right_counts(dropped):
    settings, summary, rounds = dropped
    train = [r for r in rounds if r["kind"] == "train"]
    expected = [sorted(p for p in range(CLIENTS) if drops_out(settings, r, p)) for r in range(1, ROUNDS + 1)]
    assert sum(map(len, expected)) > 0, "the seed drops nobody: the test would prove nothing"
    for entry, dropped_partitions in zip(train, expected):
        assert entry["accepted"] == CLIENTS - len(dropped_partitions)
        assert sorted(int(r["client"].split(":")[1]) for r in entry["rejected"]) == dropped_partitions
        assert all("simulated dropout" in r["reason"] for r in entry["rejected"])
        too_few = CLIENTS - len(dropped_partitions) < math.ceil(0.7 * CLIENTS)
        assert (entry["refused"] is not None and "the round is skipped" in entry["refused"]) == too_few
    assert summary["status"] == "degraded" and not summary["lost"]
    assert len(summary["absences"]) == sum(map(len, expected))
    assert summary["final"]["accepted"] == CLIENTS  # every client came back for the final evaluation


@pytest.mark.e2e
def test_under_the_default_policy_a_dropout_fails_the_run_and_names_it(small_settings, small_base, tmp_path):
    settings = small_settings.replace(clients=CLIENTS, rounds=2, fraction=1.0, dropout=DROPOUT, out=str(tmp_path))
    with pytest.raises(FedloraError, match="simulated dropout"):
        simulate(settings, cpus=2)


@pytest.mark.e2e
def test_a_failure_in_the_final_evaluation_keeps_the_trained_global_state(small_settings, small_base, tmp_path):
    from safetensors.numpy import load_file

    from fedlora import protocol

    def fails_to_evaluate(message, context, call_next):
        if message.metadata.message_type == "evaluate" and context.node_config["partition-id"] == 0:
            raise FedloraError(protocol.failure_reason(0, RuntimeError("power cut")))
        return call_next(message, context)

    settings = small_settings.replace(rounds=2, fraction=1.0, out=str(tmp_path))
    with pytest.raises(FedloraError, match="power cut"):
        simulate(settings, cpus=2, client_mods=[fails_to_evaluate])
    run = Path(tmp_path) / settings.name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and [r["kind"] for r in map(json.loads, (run / "rounds.jsonl").read_text().splitlines())][-1] == "final"
    state = load_file(run / "global.safetensors")  # saved after round 2, before the evaluation failed
    assert state and all(np.isfinite(value).all() for value in state.values())
