"""The same app runs as a plain Flower app through `flwr run`, and failures are caught."""

import json

import pytest

from fedlora.simulations.flwr_run import main

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("private_local_superlink")]


def quick(tmp_path, *extra):
    return [
        "--nodes", "3", "--timeout", "600",
        "-c", "clients=3", "-c", "rounds=2", "-c", "task='digits'", "-c", "fraction=1.0",
        "-c", "pretrain-steps=100", "-c", "heal-steps=10", "-c", "local-steps=5",
        "-c", f"out='{tmp_path / 'out'}'", "-c", f"cache-dir='{tmp_path / 'cache'}'",
        *extra,
    ]  # fmt: skip


def test_flwr_run_completes_and_writes_the_rounds(tmp_path, monkeypatch):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    assert main(quick(tmp_path)) == 0
    summary = json.loads((tmp_path / "out" / "fedit" / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["final"]["accepted"] == 3


def test_a_failed_run_is_reported_as_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    assert main(quick(tmp_path, "-c", "method='bogus'")) == 1
    assert "unknown method 'bogus'" in capsys.readouterr().err


def test_a_driver_stopped_with_sigterm_stops_the_superlink_it_started(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "flwr-home"
    env = dict(os.environ, FLWR_HOME=str(home))
    argv = [sys.executable, "-m", "fedlora.simulations.flwr_run", *quick(tmp_path, "-c", "rounds=20")]
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert "submitted run" in driver.stdout.readline()
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        driver.kill()
    database = str(home / "local-superlink" / "state.db")
    for _ in range(50):  # the SuperLink takes a moment to exit after its signal
        alive = subprocess.run(["pgrep", "-f", f"flower-superlink.*{database}"], capture_output=True, text=True).stdout.split()
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, "the local SuperLink outlived the driver that started it"
