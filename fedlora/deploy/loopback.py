"""A deployment on 127.0.0.1, for the deployment tests and ``bench_node``: free ports, the
device folder provisioned as the printed lines say, waiting for a log line, stopping a
process by its PID and process group."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (node i serves its Runtime API on first + i)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise OSError(f"no {count} consecutive free ports on 127.0.0.1")


def wait_for(log: Path, needle: str, process: subprocess.Popen, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not in {log} (exit {process.poll()}):\n{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    try:  # what it started (flower-superexec) shares its process group, which has its PID
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def provision(deployment) -> None:
    """Lay out the 'device' (a folder here) and the server's flwr connection, as the README says."""
    from fedlora.deploy.commands import connection_toml

    device = deployment.device
    Path(device.folder).mkdir()
    shutil.copy(deployment.tls.ca_cert, device.ca_cert)
    for node in deployment.nodes:
        shutil.copy(node.private_key, device.private_key(node))
        for folder in (device.state_dir(node), device.cache_dir(node), device.flwr_home(node)):
            Path(folder).mkdir(parents=True)
    deployment.flwr_home.mkdir()
    (deployment.flwr_home / "config.toml").write_text(connection_toml(deployment))
