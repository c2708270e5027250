"""A real federation the way it is deployed: fedlora installed from its wheel (not
editable), a SuperLink with TLS and SuperNode authentication and three SuperNodes as
separate processes on 127.0.0.1, each with its own key, state and cache, runs submitted
with ``flwr run`` through fedlora's driver from a folder with no fedlora source in it.

Three runs share the deployment:

Nodes 0 and 1 run ``fedlora-node`` (the ClientApp in the SuperNode's process), node 2
Flower's ``flower-supernode`` (a ClientApp process per message).

1. two rounds with a personal adapter: completes, every node installs the base once;
2. after node 0 was restarted: the nodes say they hold the base, so it is not sent again,
   and node 0 resumes its personal adapter from its state folder;
2b. node 0 restarted between rounds of a run (``--max-absences 2``): it misses at most a
   round, comes back, and trains on from its kept state;
3. with a fourth node whose node config names a partition the run does not have: the run
   fails, and its summary names the node and why.

The wheel's environment: a fresh venv whose only fedlora is the wheel, with the test
environment's site-packages behind it for the dependencies (the same versions a
``pip install "fedlora[server]"`` resolves here, without downloading them again), and
Flower's commands installed into its ``bin``. Every process is stopped by its PID and
process group in a ``finally``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from fedlora.deploy.commands import register_argv, superlink_argv
from fedlora.deploy.loopback import TIMEOUT, free_port, free_ports, provision, stop, wait_for
from fedlora.deploy.supernode import supernode_argv, supernode_environment

pytestmark = pytest.mark.e2e
REPOSITORY = Path(__file__).resolve().parents[2]
FLOWER_COMMANDS = ("flower-superlink", "flower-supernode", "flower-superexec", "flwr", "flwr-serverapp", "flwr-clientapp", "flwr-simulation")
NODES = 3


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    if not (REPOSITORY / "pyproject.toml").is_file():
        pytest.skip("needs the source checkout to build the wheel")
    root = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPOSITORY), "--no-deps", "-q", "-w", str(root)], check=True, capture_output=True)
    (wheel,) = root.glob("fedlora-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    # Dependencies from the test environment, after the wheel: a path line in a .pth file
    # adds the folder, but the folder's own .pth files (this checkout's editable hook) stay off.
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz-dependencies.pth").write_text("\n".join(paths) + "\n")
    for command in (*FLOWER_COMMANDS, "fedlora-node"):  # fedlora-node's script is the editable checkout's: same entry point
        script = (Path(sys.executable).parent / command).read_text().splitlines()
        target = venv / "bin" / command
        target.write_text("\n".join([f"#!{venv / 'bin' / 'python'}", *script[1:]]) + "\n")
        target.chmod(0o755)
    check = "import fedlora.server.app, fedlora.client.app; print(fedlora.__file__)"
    done = subprocess.run([venv / "bin" / "python", "-c", check], cwd=root, capture_output=True, text=True)  # not from the checkout
    assert done.returncode == 0 and done.stdout.startswith(str(site)), done.stdout + done.stderr
    return venv


def summary_of(out: Path) -> dict:
    return json.loads((out / "fedit" / "summary.json").read_text())


def test_a_secure_deployment_from_the_wheel(make_deployment, wheel_venv, tmp_path):
    deployment = make_deployment(
        nodes=[f"node{i}" for i in range(NODES + 1)],
        superlink=f"127.0.0.1:{free_port()}",
        device_dir=str(tmp_path / "device"),
        device_venv=str(wheel_venv),
        first_runtime_port=free_ports(NODES + 1),
    )
    nodes, stranger = deployment.nodes[:NODES], deployment.nodes[NODES]
    provision(deployment)
    device = deployment.device
    bin_dir = wheel_venv / "bin"
    server_env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", FLWR_HOME=str(deployment.flwr_home), FLWR_TELEMETRY_ENABLED="0")
    server_env.pop("PYTHONPATH", None)
    workdir = tmp_path / "submit"  # no fedlora source here: the run must use the installed one
    workdir.mkdir()
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str], env: dict[str, str]) -> Path:
        log = tmp_path / f"{name}.log"
        argv = [str(bin_dir / argv[0]) if not os.path.isabs(argv[0]) else argv[0], *argv[1:]]
        processes[name] = subprocess.Popen(argv, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return log

    def start_node(node) -> None:
        # the last node runs Flower's own SuperNode (a ClientApp process per message), the others fedlora-node
        program = "flower-supernode" if node == nodes[-1] else "fedlora-node"
        log = start(node.name, supernode_argv(deployment, node, program), dict(os.environ, **supernode_environment(deployment, node)))
        wait_for(log, "SuperNode ID:", processes[node.name])

    def submit_argv(out: Path, *config: str) -> list[str]:
        return [
            str(bin_dir / "python"), "-m", "fedlora.simulations.flwr_run", "--superlink", deployment.connection,
            "--nodes", str(NODES), "--timeout", "900",
            "-c", f"clients={NODES}", "-c", "task='digits'", "-c", "rounds=2", "-c", "fraction=1.0", "-c", "personal=true",
            "-c", "pretrain-steps=100", "-c", "heal-steps=10", "-c", "local-steps=5",
            "-c", f"out='{out}'", "-c", f"cache-dir='{tmp_path / 'server-cache'}'", *config,
        ]  # fmt: skip

    def submit(out: Path, *config: str) -> subprocess.CompletedProcess:
        return subprocess.run(submit_argv(out, *config), cwd=workdir, env=server_env, capture_output=True, text=True, timeout=1200)

    try:
        superlink_log = start("superlink", superlink_argv(deployment), server_env)
        wait_for(superlink_log, f"Uvicorn running on https://127.0.0.1:{deployment.port}", processes["superlink"])
        for node in deployment.nodes:
            register = subprocess.run([str(bin_dir / "flwr"), *register_argv(deployment, node)[1:]], env=server_env, capture_output=True, text=True, timeout=TIMEOUT)
            assert register.returncode == 0, register.stdout + register.stderr
        for node in nodes:
            start_node(node)

        first = submit(tmp_path / "first")
        assert first.returncode == 0, first.stdout + first.stderr
        summary = summary_of(tmp_path / "first")
        assert summary["status"] == "completed" and summary["final"]["accepted"] == NODES
        assert summary["bundle_bytes_total"] == NODES * summary["base"]["bytes"], "each node receives the base once"
        for node in nodes:
            assert [path.name for path in (Path(device.cache_dir(node)) / "received").iterdir()] == [summary["base"]["id"]]
            assert list(Path(device.state_dir(node)).glob("*/*.safetensors")), "client state kept on the node"

        stop(processes.pop(nodes[0].name))  # SIGTERM: it signs off and may come back at once
        start_node(nodes[0])
        second = submit(tmp_path / "second")
        assert second.returncode == 0, second.stdout + second.stderr
        summary = summary_of(tmp_path / "second")
        assert summary["status"] == "completed" and summary["bundle_bytes_total"] == 0, "nodes that hold the base are not sent it again"
        assert all(plan["holds_base"] and plan["state"] == "resumed" for plan in summary["plans"]), summary["plans"]

        # restarted between rounds of a run: with --max-absences it misses at most a round and comes back with its state
        node0_log = tmp_path / f"{nodes[0].name}.log"
        replies_before = node0_log.read_text().count("Sent successfully")
        running = subprocess.Popen(
            submit_argv(tmp_path / "restarted", "-c", "rounds=4", "-c", "max-absences=2"),
            cwd=workdir, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while node0_log.read_text().count("Sent successfully") < replies_before + 2:  # the handshake's and round 1's
                assert running.poll() is None and time.monotonic() < deadline, node0_log.read_text()[-3000:]
                time.sleep(0.2)
            restarted_at = time.time()
            stop(processes.pop(nodes[0].name))
            start_node(nodes[0])
            out, err = running.communicate(timeout=1200)
        finally:
            if running.poll() is None:
                running.kill()
        assert running.returncode in (0, 3), out + err  # completed, or degraded by the missed round
        summary = summary_of(tmp_path / "restarted")
        assert not summary["lost"] and summary["final"]["accepted"] == NODES, (summary["lost"], summary["absences"])
        assert len(summary["absences"]) <= 2 and all(a["client"] == summary["plans"][0]["client"] for a in summary["absences"])
        (state,) = [path for path in Path(device.state_dir(nodes[0])).glob("*/*.safetensors") if path.stat().st_mtime > restarted_at]
        assert state.is_file(), "the restarted node trained again from its kept state"

        # a fourth node, misconfigured: the strict default policy fails the run and says why
        config = supernode_argv(deployment, stranger)
        config[config.index("--node-config") + 1] = config[config.index("--node-config") + 1].replace(f"partition-id={stranger.partition_id}", "partition-id=7")
        log = start(stranger.name, config, dict(os.environ, **supernode_environment(deployment, stranger)))
        wait_for(log, "SuperNode ID:", processes[stranger.name])
        third = submit(tmp_path / "third")
        assert third.returncode == 1, third.stdout + third.stderr
        assert "finished:failed" in third.stderr
        summary = summary_of(tmp_path / "third")
        assert summary["status"] == "failed"
        assert [(lost["client"], lost["stage"]) for lost in summary["lost"]] == [("partition 7", "handshake")]
        assert "partition-id 7 is outside 0..2" in summary["lost"][0]["reason"]
    finally:
        for process in reversed(list(processes.values())):
            stop(process)
