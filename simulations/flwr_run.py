"""Run fedlora as a plain Flower app with ``flwr run``, and fail when the run fails.

``flwr run`` submits the app to a SuperLink and exits 0 even when the run later fails, so
this driver waits for the run and checks its final status: Flower's, then fedlora's own
from the run's log, since Flower calls a run that went on without lost clients
(``degraded``) ``finished:completed``. Exit status: 0 completed, 1 failed, 2 refused,
3 degraded, 4 fedlora's outcome missing from the log. The app folder it submits is
generated from the installed fedlora (:mod:`fedlora.flower_app`), unless ``--app`` names
one. It keeps Flower's state out of the user's home (``FLWR_HOME`` defaults to
``./.flwr-home``) and turns off runtime dependency installation, which would try to
download the app's dependencies.

    python -m fedlora.simulations.flwr_run --nodes 10 -c "rounds=3"

Any ``-c key=value`` is passed to ``flwr run --run-config`` (the keys are the settings'
fields with dashes, see ``fedlora simulate --help``). Without ``--superlink`` Flower
starts a local SuperLink in simulation mode (Ray), which this driver stops at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedlora.flower_app import write_flower_app

TERMINAL = "finished:"
SUCCESS = "finished:completed"
#: exit status when Flower's run completed but fedlora's went on without lost clients
#: (as `fedlora simulate`'s), and when fedlora's outcome could not be read from the log
DEGRADED_EXIT, UNCONFIRMED_EXIT = 3, 4
#: the ServerApp's last line (server/federation.py) and its lost clients' lines
_OUTCOME = re.compile(r"run \S+ finished: (completed|degraded|failed)")
_LOST = re.compile(r"Node \d+ \(.*?\) is (?:lost in|absent from) .*")
#: seconds to wait for the ServerApp's last log lines to reach the SuperLink
LOG_PATIENCE = 30.0


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("FLWR_HOME", str(Path.cwd() / ".flwr-home"))
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    # `flwr` starts `flower-superlink` by name: it must be on PATH (it sits next to python)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _flwr(env: dict[str, str], *args: str, cwd: Path) -> dict:
    flwr = shutil.which("flwr", path=env["PATH"])
    if flwr is None:
        raise SystemExit("error: the `flwr` command is not installed; pip install 'fedlora[server]'")
    done = subprocess.run([flwr, *args, "--format", "json"], cwd=cwd, env=env, capture_output=True, text=True)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"error: `flwr {' '.join(args)}` failed:\n{done.stdout}{done.stderr}") from None


def _terminated(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def _fedlora_outcome(env: dict[str, str], run_id: str, superlink: str | None, app: Path) -> tuple[str | None, list[str]]:
    """fedlora's status of the run (completed, degraded) and its lost clients, from the
    ServerApp's log as the SuperLink keeps it; None when the last line never arrives."""
    flwr = shutil.which("flwr", path=env["PATH"])
    deadline = time.monotonic() + LOG_PATIENCE
    while True:
        done = subprocess.run([flwr, "log", run_id, *([superlink] if superlink else []), "--show"], cwd=app, env=env, capture_output=True, text=True)
        found = _OUTCOME.search(done.stdout)
        if found or time.monotonic() > deadline:
            return (found.group(1) if found else None), [line.group(0) for line in _LOST.finditer(done.stdout)]
        time.sleep(1)


def run(app: Path, nodes: int, run_config: list[str], superlink: str | None, timeout: float) -> int:
    env = _environment()
    started_local = superlink is None
    args = ["run", str(app)] + ([superlink] if superlink else []) + ["--federation-config", f"num-supernodes={nodes}"]
    for item in run_config:
        args += ["--run-config", item]
    submitted = _flwr(env, *args, cwd=app)
    if not submitted.get("success"):
        print(f"error: flwr run was refused: {submitted.get('error-message', submitted)}", file=sys.stderr)
        return 2
    run_id = str(submitted["run-id"])
    print(f"submitted run {run_id}; waiting for it to finish (logs: flwr log {run_id})", flush=True)
    deadline = time.monotonic() + timeout
    status, details = "", ""
    # A driver stopped with SIGTERM (a CI timeout, systemd) still stops what it started.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        while time.monotonic() < deadline:
            listing = _flwr(env, "ls", "--run-id", run_id, *([superlink] if superlink else []), cwd=app)
            record = listing["runs"][0]
            status, details = record["status"], record.get("status-details", "")
            if status.startswith(TERMINAL):
                break
            time.sleep(2)
        if status == SUCCESS:
            outcome, lost = _fedlora_outcome(env, run_id, superlink, app)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if started_local:
            database = Path(env["FLWR_HOME"]) / "local-superlink" / "state.db"
            subprocess.run(["pkill", "-f", f"flower-superlink.*{database}"], check=False)
    if status == SUCCESS:
        # Flower's "completed" says the ServerApp returned; fedlora's own status says
        # whether it went on without clients (degraded), which only its log tells
        if outcome == "completed":
            print(f"run {run_id} {status}")
            return 0
        if outcome == "degraded":
            print(f"error: run {run_id} is degraded: it went on without lost clients", file=sys.stderr)
            for line in lost:
                print(f"  {line}", file=sys.stderr)
            return DEGRADED_EXIT
        print(f"error: run {run_id} ended as {status}, but fedlora's outcome is not in `flwr log {run_id}`; check the run's summary.json", file=sys.stderr)
        return UNCONFIRMED_EXIT
    print(f"error: run {run_id} ended as {status or 'unfinished (timed out)'} {details}".rstrip(), file=sys.stderr)
    print(f"see `FLWR_HOME={env['FLWR_HOME']} flwr log {run_id}` and the SuperLink log in {env['FLWR_HOME']}/local-superlink/", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=Path, default=None, help="a Flower app folder [default: one generated for the installed fedlora]")
    parser.add_argument("--nodes", type=int, default=10, help="SuperNodes (simulated, or expected on --superlink): the run's `clients`")
    parser.add_argument("-c", "--run-config", action="append", default=[], help="run-config override key=value (repeatable)")
    parser.add_argument("--superlink", default=None, help="a SuperLink connection name from FLWR_HOME/config.toml")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    if args.app is not None:
        return run(args.app.resolve(), args.nodes, args.run_config, args.superlink, args.timeout)
    with tempfile.TemporaryDirectory(prefix="fedlora-app-") as folder:
        app = write_flower_app(Path(folder), {"clients": args.nodes, "out": str(Path.cwd() / "runs" / "flwr")})
        return run(app, args.nodes, args.run_config, args.superlink, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
