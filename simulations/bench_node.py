"""What one deployed node costs: its memory, round time and bytes, on a real loopback deployment.

A SuperLink with TLS and SuperNode authentication and ``--nodes`` SuperNodes on 127.0.0.1
(set up with ``fedlora.deploy``, as the README's "Deploy to Raspberry Pis" does), one run
submitted through fedlora's ``flwr run`` driver, for each node program asked for:

- ``fedlora-node``: the SuperNode with fedlora's ClientApp in its process (what a Pi runs);
- ``flower-supernode``: Flower's default, a ``flwr-clientapp`` process per message.

While the run goes, every node's process tree (the SuperNode and everything it started) is
sampled every 0.1 s from ``/proc``: the physical pages its processes have resident, each
counted once (shared libraries included: on its own device the node needs them; run as
root to read frame numbers, else the processes' RSS is summed), and its private memory
(USS). Reported per program: the node's memory once connected and idle ("ready")
and at its peak, the run's mean round time and bytes per client and round (fedlora's own
accounting), and the bytes the SuperLink counted (``flwr ls --format json``). With
``--simulate``, the same configuration also runs in ``fedlora simulate`` for the round time.

    python -m fedlora.simulations.bench_node --nodes 2 -c rounds=3 --simulate
    python -m fedlora.simulations.bench_node --profile rpi-zero-2w --program fedlora-node

Linux only (``/proc``). The base is built once into fedlora's cache and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fedlora.deploy.certificates import write_tls_files
from fedlora.deploy.commands import register_argv, superlink_argv
from fedlora.deploy.loopback import TIMEOUT, free_port, free_ports, provision, stop, wait_for
from fedlora.deploy.node_keys import write_node_keys
from fedlora.deploy.plan import plan_deployment
from fedlora.deploy.supernode import NODE_PROGRAMS, supernode_argv, supernode_environment

SAMPLE_SECONDS = 0.1
MIB = 1024**2


# -- memory of a process tree, from /proc --------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            pass
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += _children(current)
    return tree


PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT, _FRAME = np.uint64(1 << 63), np.uint64((1 << 55) - 1)


def _frames(pid: int) -> np.ndarray:
    """The physical frames ``pid`` has resident (/proc/PID/pagemap; zeros without
    CAP_SYS_ADMIN, which the caller detects)."""
    found = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            start, end = (int(address, 16) for address in line.split()[0].split("-"))
            if start >= 1 << 47:  # [vsyscall]: not in the pagemap
                continue
            pagemap.seek(start // PAGE * 8)
            entries = np.frombuffer(pagemap.read((end - start) // PAGE * 8), dtype=np.uint64)
            found.append(entries[(entries & _PRESENT) != 0] & _FRAME)
    return np.concatenate(found) if found else np.zeros(0, np.uint64)


def tree_memory(pid: int) -> tuple[int, int]:
    """(resident, private) bytes of ``pid``'s process tree: resident counts every physical
    page any of its processes maps once — shared libraries included, as the node needs
    them on a device of its own — and private is the pages no other process maps (USS).
    Without the right to read frame numbers, resident is the sum of the processes' RSS."""
    frames, rss, private = [], 0, 0
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
            frames.append(_frames(member))
        except OSError:  # exited between listing and reading
            continue
        fields = {key: int(value) * 1024 for key, value in re.findall(r"^(\w+):\s+(\d+) kB", rollup, re.MULTILINE)}
        rss += fields.get("Rss", 0)
        private += fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    every = np.concatenate(frames) if frames else np.zeros(0, np.uint64)
    if every.size and not every.any():
        return rss, private
    return int(np.unique(every).size) * PAGE, private


@dataclass
class NodeMemory:
    ready_resident: int = 0
    ready_private: int = 0
    peak_resident: int = 0
    peak_private: int = 0
    processes_at_peak: int = 0
    series: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, resident bytes)


class Sampler:
    """Samples each node's tree every SAMPLE_SECONDS in a thread, keeping the peaks."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.memory = {name: NodeMemory() for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def mark_ready(self) -> None:
        for name, pid in self.pids.items():
            self.memory[name].ready_resident, self.memory[name].ready_private = tree_memory(pid)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(SAMPLE_SECONDS):
            for name, pid in self.pids.items():
                resident, private = tree_memory(pid)
                record = self.memory[name]
                record.series.append((round(time.monotonic() - started, 2), resident))
                if resident > record.peak_resident:
                    record.peak_resident, record.processes_at_peak = resident, len(process_tree(pid))
                record.peak_private = max(record.peak_private, private)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- one deployment -----------------------------------------------------------------------


@dataclass
class DeploymentResult:
    program: str
    nodes: dict[str, NodeMemory]
    round_seconds: float
    run_seconds: float
    bytes_up_per_client_round: float
    bytes_down_per_client_round: float
    fedlora_total_bytes: int
    superlink_total_bytes: int
    status: str
    plans: list = field(default_factory=list)


def _config_args(config: list[str]) -> list[str]:
    return [arg for item in config for arg in ("-c", item)]


def deploy_and_run(program: str, nodes: int, config: list[str], profile: str | None, cache_dir: Path, workdir: Path) -> DeploymentResult:
    """One loopback deployment running one fedlora run; every process stopped at the end."""
    tls = write_tls_files(workdir / "tls", ["127.0.0.1"])
    keys = write_node_keys(workdir / "keys", [f"node{i}" for i in range(nodes)])
    deployment = plan_deployment(
        tls, keys, superlink=f"127.0.0.1:{free_port()}", device_dir=str(workdir / "device"), device_venv=sys.prefix,
        first_runtime_port=free_ports(nodes), flwr_home=workdir / "flwr-home", profile=profile,
    )  # fmt: skip
    provision(deployment)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", FLWR_HOME=str(deployment.flwr_home), FLWR_TELEMETRY_ENABLED="0")
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, argv: list[str], environment: dict[str, str]) -> Path:
        log = workdir / f"{name}.log"
        argv = [argv[0] if os.path.isabs(argv[0]) else str(bin_dir / argv[0]), *argv[1:]]
        processes[name] = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=environment, start_new_session=True)
        return log

    out = workdir / "out"
    try:
        log = start("superlink", superlink_argv(deployment), env)
        wait_for(log, f"Uvicorn running on https://127.0.0.1:{deployment.port}", processes["superlink"])
        for node in deployment.nodes:
            done = subprocess.run([str(bin_dir / "flwr"), *register_argv(deployment, node)[1:]], env=env, capture_output=True, text=True, timeout=TIMEOUT)
            if done.returncode != 0:
                raise RuntimeError(f"registering {node.name} failed: {done.stdout}{done.stderr}")
        for node in deployment.nodes:
            log = start(node.name, supernode_argv(deployment, node, program), dict(os.environ, **supernode_environment(deployment, node)))
            wait_for(log, "SuperNode ID:", processes[node.name])
        time.sleep(2)  # let the nodes settle after connecting
        sampler = Sampler({node.name: processes[node.name].pid for node in deployment.nodes})
        sampler.mark_ready()
        submit = [
            sys.executable, "-m", "fedlora.simulations.flwr_run", "--superlink", deployment.connection, "--nodes", str(nodes),
            "--timeout", "3600", "-c", f"clients={nodes}", "-c", "fraction=1.0", "-c", f"out='{out}'", "-c", f"cache-dir='{cache_dir}'",
            *_config_args(config),
        ]  # fmt: skip
        started = time.perf_counter()
        with sampler:
            done = subprocess.run(submit, cwd=workdir, env=env, capture_output=True, text=True)
        run_seconds = time.perf_counter() - started
        run_id = re.search(r"submitted run (\d+)", done.stdout)
        if done.returncode != 0 or run_id is None:
            raise RuntimeError(f"the run failed ({program}):\n{done.stdout}{done.stderr}")
        listing = subprocess.run(
            [str(bin_dir / "flwr"), "ls", deployment.connection, "--run-id", run_id.group(1), "--format", "json"], env=env, capture_output=True, text=True
        )
        traffic = json.loads(listing.stdout)["runs"][0]["network-traffic"]["total-bytes"]
    finally:
        for process in reversed(list(processes.values())):
            stop(process)
    (summary_file,) = out.glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    return DeploymentResult(
        program=program,
        nodes=sampler.memory,
        round_seconds=summary["wall_time_per_round"],
        run_seconds=run_seconds,
        bytes_up_per_client_round=summary["bytes_up_per_client_round"],
        bytes_down_per_client_round=summary["bytes_down_per_client_round"],
        fedlora_total_bytes=summary["total_bytes"],
        superlink_total_bytes=traffic,
        status=summary["status"],
        plans=summary.get("plans", []),
    )


def simulate(nodes: int, config: list[str], cache_dir: Path, workdir: Path) -> float:
    """The same configuration in ``fedlora simulate`` (without device profiles: a simulated
    client has no memory budget), for its mean round time."""
    options = []
    for item in config:
        key, value = item.split("=", 1)
        options += [f"--{key}", value.strip("'\"")]
    argv = [str(Path(sys.executable).parent / "fedlora"), "simulate", "--clients", str(nodes), "--fraction", "1.0", "--out", str(workdir / "sim"), "--cache-dir", str(cache_dir), *options]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        raise RuntimeError(f"fedlora simulate failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (summary_file,) = (workdir / "sim").glob("*/summary.json")
    return json.loads(summary_file.read_text())["wall_time_per_round"]


# -- report -------------------------------------------------------------------------------


def report(results: list[DeploymentResult], simulated: float | None, budget: int | None) -> str:
    lines = [
        "| node program | node ready | node peak | node peak (private) | processes at peak | round time | bytes/client/round up, down | SuperLink bytes | fedlora bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        peak = max(result.nodes.values(), key=lambda m: m.peak_resident)
        ready = max(m.ready_resident for m in result.nodes.values())
        lines.append(
            f"| {result.program} | {ready / MIB:.0f} MiB | {peak.peak_resident / MIB:.0f} MiB | {max(m.peak_private for m in result.nodes.values()) / MIB:.0f} MiB "
            f"| {peak.processes_at_peak} | {result.round_seconds:.1f} s | {result.bytes_up_per_client_round:,.0f} B, {result.bytes_down_per_client_round:,.0f} B "
            f"| {result.superlink_total_bytes:,} B | {result.fedlora_total_bytes:,} B |"
        )
    if simulated is not None:
        lines.append(f"| fedlora simulate (same configuration) | | | | | {simulated:.1f} s | | | |")
    if budget is not None:
        lines.append(f"\nthe profile's budget for the whole node (its RAM less ram_reserve): {budget / MIB:.0f} MiB")
        for result in results:
            peak = max(m.peak_resident for m in result.nodes.values())
            verdict = "within it" if peak <= budget else f"over it by {(peak - budget) / MIB:.0f} MiB"
            lines.append(f"{result.program}: peak {peak / MIB:.0f} MiB, {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="SuperNodes on this machine [2]")
    parser.add_argument("--program", choices=[*NODE_PROGRAMS, "both"], default="both", help="the node program to measure [both]")
    parser.add_argument("--profile", default=None, help="a built-in device profile every node declares (e.g. rpi-zero-2w-headless): its plan is trained")
    parser.add_argument("-c", "--run-config", action="append", default=[], help="run-config key=value (repeatable), e.g. rounds=3")
    parser.add_argument("--simulate", action="store_true", help="also run the same configuration in `fedlora simulate`")
    parser.add_argument("--cache-dir", type=Path, default=None, help="the server's cache, where the base is built once [fedlora's cache]")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep each deployment's folder (logs, keys, state) under this folder")
    args = parser.parse_args(argv)
    if not Path("/proc/self/smaps_rollup").exists():
        parser.error("needs Linux's /proc/PID/smaps_rollup")
    from fedlora.cache import cache_root

    cache_dir = cache_root(args.cache_dir)
    config = args.run_config or ["rounds=3"]
    programs = list(NODE_PROGRAMS) if args.program == "both" else [args.program]
    results = []
    for program in programs:
        if args.keep:
            folder = args.keep / program
            folder.mkdir(parents=True)
            results.append(deploy_and_run(program, args.nodes, config, args.profile, cache_dir, folder))
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-node-{program}-") as folder:
            results.append(deploy_and_run(program, args.nodes, config, args.profile, cache_dir, Path(folder)))
        print(f"{program}: done", file=sys.stderr, flush=True)
    simulated = None
    if args.simulate:
        with tempfile.TemporaryDirectory(prefix="bench-node-sim-") as folder:
            simulated = simulate(args.nodes, config, cache_dir, Path(folder))
    budget = None
    if args.profile:
        from fedlora.client.profiles import load_profile

        budget = load_profile(args.profile).node_budget
    print(report(results, simulated, budget))
    if args.json:
        args.json.write_text(json.dumps({"results": [asdict(r) for r in results], "simulated_round_seconds": simulated}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
