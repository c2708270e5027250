"""The flwr run driver reports fedlora's outcome, not only Flower's: a degraded run is not a success."""

from pathlib import Path

import pytest

from fedlora.simulations import flwr_run

LOG = """\
INFO :      [ROUND 2]
WARNING :   Node 4242 (digits:client-1) is lost in train: [partition 1] out of memory
INFO :      run fedit finished: degraded
"""


@pytest.fixture
def completed_in_flower(monkeypatch):
    def flwr(env, *args, cwd):
        return {"success": True, "run-id": 7} if args[0] == "run" else {"runs": [{"status": "finished:completed"}]}

    monkeypatch.setattr(flwr_run, "_flwr", flwr)
    monkeypatch.setenv("FLWR_HOME", "/nonexistent-flwr-home")


def outcome_from(log: str):
    def outcome(env, run_id, superlink, app):
        found = flwr_run._OUTCOME.search(log)
        return (found.group(1) if found else None), [m.group(0) for m in flwr_run._LOST.finditer(log)]

    return outcome


def test_a_degraded_run_exits_3_and_names_who_was_lost(completed_in_flower, monkeypatch, capsys):
    monkeypatch.setattr(flwr_run, "_fedlora_outcome", outcome_from(LOG))
    assert flwr_run.run(Path("."), 3, [], "fedlora", timeout=5) == flwr_run.DEGRADED_EXIT == 3
    err = capsys.readouterr().err
    assert "is degraded" in err and "Node 4242 (digits:client-1) is lost in train: [partition 1] out of memory" in err


def test_a_completed_run_exits_0(completed_in_flower, monkeypatch):
    monkeypatch.setattr(flwr_run, "_fedlora_outcome", outcome_from(LOG.replace("degraded", "completed")))
    assert flwr_run.run(Path("."), 3, [], "fedlora", timeout=5) == 0


def test_an_outcome_missing_from_the_log_is_not_taken_for_success(completed_in_flower, monkeypatch, capsys):
    monkeypatch.setattr(flwr_run, "_fedlora_outcome", outcome_from("INFO : [ROUND 1]\n"))
    assert flwr_run.run(Path("."), 3, [], "fedlora", timeout=5) == flwr_run.UNCONFIRMED_EXIT
    assert "fedlora's outcome is not in `flwr log 7`" in capsys.readouterr().err
