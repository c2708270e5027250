"""A whole federation run on the server side: base, global state, handshake, rounds.

``run_federation`` is what the ServerApp calls. It builds (or fetches from the cache) the
frozen INT8 base, sets up the method's global state, waits until every expected node has
registered (Flower could otherwise sample round 1 from a partial set), asks every node who
it is, runs the rounds with :class:`AdapterFederation`, and writes the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common import log
from flwr.serverapp import Grid

from fedlora.adapters import GLOBAL, adapter_state
from fedlora.cache import cache_root
from fedlora.compress import CompressConfig, CompressResult, build_base
from fedlora.errors import FedloraError
from fedlora.methods import get_method
from fedlora.participant import adapted_model, adapter_config, task_of
from fedlora.pretrain import PretrainConfig, pretrained_model
from fedlora.rank import RankRule
from fedlora.records import message_bytes, to_record
from fedlora.server.global_state import LinearGlobal, ProductGlobal
from fedlora.server.results import RunRecorder
from fedlora.server.strategy import AdapterFederation, NodePlan
from fedlora.settings import FederationSettings

REGISTRATION_TIMEOUT = 300.0  # seconds to wait for every expected node
#: the final global state of a run, next to its rounds and summary (what `fedlora export` reads)
GLOBAL_FILE = "global.safetensors"


def base_for(settings: FederationSettings, progress=None) -> CompressResult:
    """The frozen INT8 base of a run (built once, then cached)."""
    return build_base(
        task_of(settings),
        PretrainConfig(steps=settings.pretrain_steps),
        CompressConfig(rank=RankRule("budget", settings.param_ratio), heal_steps=settings.heal_steps),
        settings.seed,
        cache_root(settings.cache_dir or None),
        progress=progress,
    )


def _numpy(tensors) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().astype(np.float32) for key, value in tensors.items()}


def global_state(settings: FederationSettings, base: CompressResult | None):
    """The method's global state at round 0."""
    method = get_method(settings.method)
    task = task_of(settings)
    if method.variant is None:  # full-model FedAvg starts from the pretrained dense model
        dense, _ = pretrained_model(task, PretrainConfig(steps=settings.pretrain_steps), settings.seed, cache_root(settings.cache_dir or None))
        return LinearGlobal(method, _numpy(dense.state_dict()), {}, 1.0)

    @lru_cache(maxsize=None)
    def adapter_tensors(rank: int) -> dict[str, np.ndarray]:
        return _numpy(adapter_state(adapted_model(settings, base.bundle, task, rank=rank), GLOBAL))

    scaling = settings.alpha / settings.rank
    if method.name == "flexlora":
        return ProductGlobal(lambda rank: {k: v for k, v in adapter_tensors(rank).items() if method.travels(k)}, settings.alpha / settings.rank)
    tensors = adapter_tensors(settings.rank)
    travelling = {k: v for k, v in tensors.items() if method.travels(k)}
    frozen = {k: v for k, v in tensors.items() if not method.travels(k)}
    return LinearGlobal(method, travelling, frozen, scaling)


def wait_for_nodes(grid: Grid, expected: int, timeout: float = REGISTRATION_TIMEOUT) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise FedloraError(f"only {len(nodes)} of {expected} nodes registered within {timeout:.0f} s; start the missing SuperNodes or lower --clients")
        time.sleep(0.1)


def handshake(grid: Grid, nodes: list[int], recorder: RunRecorder, settings: FederationSettings) -> dict[int, NodePlan]:
    """Ask every node who it is (partition, name, rank); nodes that fail are reported."""
    messages = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type=MessageType.QUERY) for node in nodes]
    bytes_down = sum(message_bytes(m) for m in messages)
    replies = list(grid.send_and_receive(messages))
    plans, excluded = {}, []
    for reply in replies:
        node = reply.metadata.src_node_id
        if reply.has_error() or "plan" not in reply.content.config_records:
            reason = reply.error.reason if reply.has_error() else "no plan in reply"
            log(WARNING, "Node %s is excluded: %s", node, reason)
            excluded.append({"node": node, "client": "?", "reason": reason})
            continue
        plan = reply.content.config_records["plan"]
        plans[node] = NodePlan(node, int(plan["partition"]), str(plan["name"]), int(plan["rank"]))
    recorder.record(
        {
            "run": settings.name,
            "round": 0,
            "kind": "handshake",
            "clients": len(nodes),
            "accepted": len(plans),
            "rejected": excluded,
            "bytes_up": sum(message_bytes(r) for r in replies),
            "bytes_down": bytes_down,
            "bundle_bytes": 0,
        }
    )
    if not plans:
        first = excluded[0]["reason"].strip().splitlines()[-1] if excluded else "no replies"
        raise FedloraError(f"no node answered the handshake (first error: {first}); see Flower's log for details")
    return plans


def run_federation(grid: Grid, settings: FederationSettings, on_record: Callable[[dict], None] | None = None) -> dict[str, Any]:
    method = get_method(settings.method)
    task = task_of(settings)
    base = None if method.variant is None else base_for(settings)
    state = global_state(settings, base)
    recorder = RunRecorder(Path(settings.out) / settings.name, on_record)
    started = time.perf_counter()
    nodes = wait_for_nodes(grid, settings.clients)
    plans = handshake(grid, nodes, recorder, settings)
    strategy = AdapterFederation(
        settings,
        state,
        plans,
        recorder,
        base_id=None if base is None else base.bundle.id,
        base_files=None if base is None else base.bundle.files(),
    )
    strategy.start(grid=grid, initial_arrays=to_record(state.tensors), num_rounds=settings.rounds)
    summary = summarize(settings, task, base, recorder, time.perf_counter() - started)
    save_file({k: np.ascontiguousarray(v) for k, v in state.tensors.items()}, recorder.directory / GLOBAL_FILE)
    recorder.write_summary(summary)
    log(INFO, "run %s finished", settings.name)
    return summary


def summarize(settings: FederationSettings, task, base: CompressResult | None, recorder: RunRecorder, seconds: float) -> dict[str, Any]:
    train = [r for r in recorder.rounds if r["kind"] == "train"]
    final = next((r for r in recorder.rounds if r["kind"] == "final"), None)
    messages = sum(r["accepted"] + len(r["rejected"]) for r in train) or 1
    return {
        "run": settings.name,
        "settings": settings.to_run_config(),
        "task": {"name": task.name, "config": task.config, "fingerprint": task.fingerprint},
        "adapter": None if base is None else adapter_config(settings, task).to_dict(),
        "base": None if base is None else {"id": base.bundle.id, "bytes": base.bundle.size_bytes, "metrics": base.metrics},
        "rounds": len(train),
        "bytes_up_per_client_round": sum(r["bytes_up"] for r in train) / messages,
        "payload_up_per_client_round": sum(r["payload_up"] for r in train) / messages,
        "bytes_down_per_client_round": sum(r["bytes_down"] - r["bundle_bytes"] for r in train) / max(sum(r["clients"] for r in train), 1),
        "bundle_bytes_total": sum(r["bundle_bytes"] for r in recorder.rounds),
        "total_bytes": recorder.cumulative_bytes,
        "wall_time_per_round": sum(r["wall_time"] for r in train) / max(len(train), 1),
        "wall_time": seconds,
        "final": final,
        "rejected": sum(len(r["rejected"]) for r in recorder.rounds),
    }
