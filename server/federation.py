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
from flwr.app import ArrayRecord, Message, MessageType
from flwr.common import log
from flwr.serverapp import Grid

from fedlora import protocol
from fedlora.adapters import GLOBAL, adapter_state
from fedlora.cache import cache_root
from fedlora.compress import CompressConfig, CompressResult, build_base
from fedlora.errors import FedloraError
from fedlora.methods import get_method
from fedlora.participant import adapted_model, adapter_config, task_of
from fedlora.pretrain import PretrainConfig, pretrained_model
from fedlora.rank import RankRule
from fedlora.records import message_bytes
from fedlora.run_layout import InvocationLayout
from fedlora.server.global_state import GlobalState, LinearGlobal, ProductGlobal, save_global
from fedlora.server.participation import Participation
from fedlora.server.prompt_grid import PromptGrid
from fedlora.server.results import RunRecorder
from fedlora.server.strategy import AdapterFederation
from fedlora.server.validation import NodePlan, validate_description
from fedlora.settings import FederationSettings

REGISTRATION_TIMEOUT = 300.0  # seconds to wait for every expected node


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


#: a base built on the server logs its progress this often (fraction of a phase)
BASE_PROGRESS_STEP = 0.1


def _log_progress(phase: str, total: int) -> Callable[[int, float], None]:
    """Progress of building the base, in Flower's log (`flwr log`): a cold server may
    pretrain for many minutes before round 1."""
    log(INFO, "building the base: %s, %d steps", phase, total)
    every = max(1, int(total * BASE_PROGRESS_STEP))

    def on_step(step: int, loss: float) -> None:
        if (step + 1) % every == 0 or step + 1 == total:
            log(INFO, "building the base: %s %d/%d, loss %.4f", phase, step + 1, total, loss)

    return on_step


def _numpy(tensors) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().astype(np.float32) for key, value in tensors.items()}


def global_state(settings: FederationSettings, base: CompressResult | None) -> GlobalState:
    """The method's global state at round 0."""
    method = get_method(settings.method)
    task = task_of(settings)
    if method.dense:  # full-model FedAvg starts from the pretrained dense model
        dense, _ = pretrained_model(task, PretrainConfig(steps=settings.pretrain_steps), settings.seed, cache_root(settings.cache_dir or None))
        return LinearGlobal(method, _numpy(dense.state_dict()), {}, 1.0, settings.robust)

    @lru_cache(maxsize=None)
    def adapter_tensors(rank: int, targets: str | None = None) -> dict[str, np.ndarray]:
        return _numpy(adapter_state(adapted_model(settings, base.bundle, task, rank=rank, targets=targets), GLOBAL))

    scaling = settings.alpha / settings.rank
    if method.rule == "product":
        return ProductGlobal(lambda rank, targets: {k: v for k, v in adapter_tensors(rank, targets).items() if method.travels(k)}, scaling, settings.robust)
    tensors = adapter_tensors(settings.rank)
    travelling = {k: v for k, v in tensors.items() if method.travels(k)}
    frozen = {k: v for k, v in tensors.items() if not method.travels(k)}
    return LinearGlobal(method, travelling, frozen, scaling, settings.robust)


def wait_for_nodes(grid: Grid, expected: int, timeout: float = REGISTRATION_TIMEOUT) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise FedloraError(f"only {len(nodes)} of {expected} nodes registered within {timeout:.0f} s; start the missing SuperNodes or lower --clients")
        time.sleep(0.1)


def handshake(
    grid: Grid,
    nodes: list[int],
    recorder: RunRecorder,
    settings: FederationSettings,
    participation: Participation,
    base_id: str | None,
    state: GlobalState,
) -> dict[int, NodePlan]:
    """Ask every node who it is, what it will train and over which link. A node whose device
    fits no plan is excluded; one that fails, answers wrongly or not at all, claims a
    partition another node claimed first, or names layers the model does not have is lost —
    each by name and reason, never silently — and the run fails when too few are left."""
    participation.expected = len(nodes)  # every node that connected was meant to take part
    messages = [Message(protocol.query_content(base_id), dst_node_id=node, message_type=MessageType.QUERY) for node in nodes]
    bytes_down = sum(message_bytes(m) for m in messages)
    replies = list(grid.send_and_receive(messages, timeout=settings.round_timeout))
    method, task = get_method(settings.method), task_of(settings)
    plans: dict[int, NodePlan] = {}
    claimed: dict[int, int] = {}  # partition -> the node that claimed it first
    for reply in sorted(replies, key=lambda reply: reply.metadata.src_node_id):  # first: by node id, whatever the arrival order
        verdict = validate_description(reply, method, settings.rank, settings.clients)
        if isinstance(verdict, NodePlan):
            conflict = _conflict(verdict, claimed, state)
            if conflict is not None:
                participation.lose(verdict.node_id, verdict.name, "handshake", conflict)
                continue
            claimed[verdict.partition] = verdict.node_id
            plans[verdict.node_id] = verdict
            if verdict.state == protocol.STATE_FRESH_OTHER_KEPT:
                log(WARNING, "Node %s (%s) starts fresh: the state it holds is of another federation or base, kept and unused", verdict.node_id, verdict.name)
        elif verdict.device_refused:
            participation.exclude(verdict.node_id, verdict.client or "?", verdict.profile, verdict.reason)
        else:
            participation.lose(verdict.node_id, verdict.client or _named(task, verdict.reason), "handshake", verdict.reason)
    for node in sorted(set(nodes) - {reply.metadata.src_node_id for reply in replies}):
        participation.lose(node, "?", "handshake", f"no answer to the handshake within {settings.round_timeout:g} s")
    participation.taking_part.update(plans)
    recorder.record(
        {
            "run": settings.name,
            "round": 0,
            "kind": "handshake",
            "clients": len(nodes),
            "accepted": len(plans),
            "rejected": participation.excluded + participation.lost,
            "bytes_up": sum(message_bytes(r) for r in replies),
            "bytes_down": bytes_down,
            "bundle_bytes": 0,
            "plans": [
                {
                    "client": p.name, "profile": p.profile, "rank": p.rank, "targets": p.targets, "link": p.link.name if p.link else None,
                    "holds_base": p.holds_base, "state": p.state,
                }  # fmt: skip
                for p in sorted(plans.values(), key=lambda p: p.partition)
            ],
        }
    )
    participation.check()
    return plans


def _conflict(plan: NodePlan, claimed: dict[int, int], state: GlobalState) -> str | None:
    """Why a well-formed plan cannot take part next to the others, or None."""
    if plan.partition in claimed:
        return f"partition {plan.partition} is claimed by node {claimed[plan.partition]} already"
    try:  # what it would be sent: its rank on the layers it names
        state.tensors_for(plan.rank, plan.targets)
    except Exception as error:  # noqa: BLE001 — any reason this plan cannot be served
        return f"the server cannot serve its plan (rank {plan.rank}, layers {plan.targets or 'default'}): {error}"
    return None


def _named(task, reason: str) -> str:
    """The client a failure names by its partition (clients say who they are when they fail)."""
    partition = protocol.failed_partition(reason)
    if partition is None:
        return "?"
    return task.client(partition).name if 0 <= partition < task.num_clients else f"partition {partition}"


def run_federation(grid: Grid, settings: FederationSettings, on_record: Callable[[dict], None] | None = None) -> dict[str, Any]:
    grid = PromptGrid(grid)
    method = get_method(settings.method)
    task = task_of(settings)
    base = None if method.dense else base_for(settings, progress=_log_progress)
    if base is not None:
        log(INFO, "base %s (%d bytes)%s", base.bundle.id[:12], base.bundle.size_bytes, " from the cache" if base.cached else "")
    state = global_state(settings, base)
    layout = InvocationLayout(Path(settings.out)).run(settings.name)
    recorder = RunRecorder(layout, on_record)
    started = time.perf_counter()
    participation = Participation(settings.clients, settings.min_clients, max_absences=settings.max_absences)
    try:
        nodes = wait_for_nodes(grid, settings.clients)
        plans = handshake(grid, nodes, recorder, settings, participation, None if base is None else base.bundle.id, state)
        strategy = AdapterFederation(
            settings,
            state,
            plans,
            recorder,
            participation,
            base_id=None if base is None else base.bundle.id,
            base_files=None if base is None else base.bundle.files(),
        )
        # The state lives in the strategy (each node gets its own rank's tensors), not in
        # Flower's arrays: Flower's loop is given none.
        strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=settings.rounds, timeout=settings.round_timeout)
    except Exception as error:  # the run fails, but says who was lost and why, and keeps its rounds and state
        summary = summarize(settings, task, base, recorder, participation, time.perf_counter() - started)
        recorder.write_summary({**summary, "status": "failed", "error": str(error) if isinstance(error, FedloraError) else repr(error)})
        raise
    summary = summarize(settings, task, base, recorder, participation, time.perf_counter() - started)
    # the strategy's state: a refused round (server/global_state.apply_if_finite) puts back a copy
    save_global(strategy.state, layout.global_state)
    recorder.write_summary(summary)
    log(INFO, "run %s finished: %s", settings.name, summary["status"])
    return summary


def summarize(
    settings: FederationSettings, task, base: CompressResult | None, recorder: RunRecorder, participation: Participation, seconds: float
) -> dict[str, Any]:
    train = [r for r in recorder.rounds if r["kind"] == "train"]
    final = next((r for r in recorder.rounds if r["kind"] == "final"), None)
    messages = sum(r["accepted"] + len(r["rejected"]) for r in train) or 1
    return {
        "run": settings.name,
        "status": participation.status,
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
        "rejected": sum(len(r["rejected"]) for r in train + ([final] if final else [])),
        "excluded": participation.excluded,
        "lost": participation.lost,
        "absences": participation.absences,
        "skipped_rounds": [r["round"] for r in train if r.get("refused")],
        "plans": recorder.rounds[0].get("plans", []) if recorder.rounds else [],
        "devices": device_summary(train),
    }


def device_summary(train: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per device profile: updates sent, mean bytes and time on the uplink, and who went
    over the link's limits (LoRaWAN fair use, daily airtime)."""
    rows = [row for entry in train for row in entry.get("links", [])]
    if not rows:
        return None
    profiles: dict[str, dict[str, Any]] = {}
    for row in rows:
        stats = profiles.setdefault(row["profile"], {"link": row["link"], "updates": 0, "up_bytes": 0, "up_airtime_s": 0.0, "up_wall_s": 0.0, "down_wall_s": 0.0, "over_limits": set()})
        stats["updates"] += 1
        for key in ("up_bytes", "up_airtime_s", "up_wall_s", "down_wall_s"):
            stats[key] += row[key]
        if not row["fits"]:
            stats["over_limits"].add(row["client"])
    return {
        profile: {
            "link": s["link"],
            "updates": s["updates"],
            "up_bytes_mean": s["up_bytes"] / s["updates"],
            "up_airtime_s_mean": s["up_airtime_s"] / s["updates"],
            "up_wall_s_mean": s["up_wall_s"] / s["updates"],
            "down_wall_s_mean": s["down_wall_s"] / s["updates"],
            "clients_over_limits": sorted(s["over_limits"]),
        }
        for profile, s in sorted(profiles.items())
    }
