"""The fedlora strategy: adapter-only federation over Flower's Message API.

One mechanism for every method; the method's own rule is the ``state`` hook
(:mod:`fedlora.server.global_state`). Per round it:

1. samples clients deterministically from the seed (ordered by partition, not by the
   random node ids Flower assigns);
2. sends each one the global tensors for its rank in the run's wire format, and — on
   first contact only — the base bundle, which the client verifies and caches;
3. validates every reply at the boundary, logs and drops bad ones;
4. bounds each update's influence (:mod:`fedlora.server.influence`: weight capped at the
   client's partition size, norm clipped relative to recent updates);
5. applies the method's rule — unless the result would not be finite, when the round is
   refused and the state kept — measures the aggregation error, and records the round:
   metrics, the bytes of every message as serialized by Flower, and wall time.

After the last round every client evaluates the final global model (``evaluate``).

The global state lives in the method's :class:`~fedlora.server.global_state.GlobalState`,
not in the ``ArrayRecord`` Flower's loop passes around: each node receives the tensors for
its own rank and layers, so the strategy hands Flower no arrays. Each round's outgoing side
is one :class:`Dispatch`, built when the messages are made and read when the replies come.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlora import protocol
from fedlora.links import airtime
from fedlora.participant import task_of
from fedlora.records import message_bytes, to_record
from fedlora.server.global_state import ClientResult, GlobalState, apply_if_finite, save_global
from fedlora.server.influence import InfluenceBounds
from fedlora.server.participation import Participation
from fedlora.server.results import RunRecorder, spread
from fedlora.server.validation import Accepted, NodePlan, Rejected, validate_evaluate_reply, validate_train_reply
from fedlora.settings import FederationSettings
from fedlora.wire import Shapes, decode, encode


@dataclass
class Dispatch:
    """One round's messages and what each node was sent."""

    started: float
    messages: list[Message] = field(default_factory=list)
    sent: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # node -> tensors it received, decoded
    down_by_node: dict[int, int] = field(default_factory=dict)  # node -> bytes of its message
    carries_base: set[int] = field(default_factory=set)  # nodes whose message carries the base
    bundle_bytes: int = 0

    @property
    def bytes_down(self) -> int:
        return sum(self.down_by_node.values())

    def shapes(self, node: int) -> Shapes:
        return {key: value.shape for key, value in self.sent.get(node, {}).items()}


def _on_behalf_of(reply: Message, addressed: dict[str, int]) -> Message:
    """A reply as from the node its message went to: when a node is unreachable, the
    SuperLink answers in its place (``NODE_UNAVAILABLE``) under its own id."""
    node = addressed.get(reply.metadata.reply_to_message_id)
    if node is not None and reply.metadata.src_node_id != node:
        reply.metadata.__dict__["_src_node_id"] = node
    return reply


class AdapterFederation(Strategy):
    def __init__(
        self,
        settings: FederationSettings,
        state: GlobalState,
        plans: dict[int, NodePlan],
        recorder: RunRecorder,
        participation: Participation,
        base_id: str | None = None,
        base_files: dict[str, bytes] | None = None,
    ):
        self.settings = settings
        self.state = state
        self.plans = plans
        self.recorder = recorder
        self.participation = participation
        self.base_id = base_id
        self.base_record = None if base_files is None else protocol.base_record(base_files)
        self.base_size = sum(len(data) for data in (base_files or {}).values())
        # nodes that hold the base: they said so in the handshake, or confirmed receiving it
        self.delivered: set[int] = {node for node, plan in plans.items() if plan.holds_base}
        self._dispatches: dict[tuple[int, str], Dispatch] = {}
        self.influence = InfluenceBounds(settings.norm_bound)
        self._partition_sizes: dict[int, int] = {}

    # -- sending ---------------------------------------------------------------------

    def _sample(self, server_round: int) -> list[int]:
        ordered = sorted(self.participation.taking_part, key=lambda node: self.plans[node].partition)
        count = max(1, round(self.settings.fraction * len(ordered)))
        rng = np.random.default_rng([self.settings.seed, server_round])
        chosen = rng.choice(len(ordered), size=min(count, len(ordered)), replace=False)
        return [ordered[i] for i in sorted(chosen)]

    def _dispatch(self, nodes: Iterable[int], server_round: int, message_type: str) -> list[Message]:
        """Messages for ``nodes``: the global tensors for each node's rank and layers —
        encoded once per (rank, targets) — and the base to nodes that do not hold it yet."""
        dispatch = Dispatch(started=time.perf_counter())
        wire = self.settings.wire
        payloads: dict[tuple[int, str | None], tuple[ArrayRecord, dict[str, np.ndarray]]] = {}
        for node in nodes:
            plan = self.plans[node]
            if (plan.rank, plan.targets) not in payloads:
                tensors = self.state.tensors_for(plan.rank, plan.targets)
                payload = encode(tensors, wire)
                # exactly what the client will see, after the wire's rounding
                received = decode(payload, wire, {k: v.shape for k, v in tensors.items()})
                payloads[plan.rank, plan.targets] = (to_record(payload), received)
            record, dispatch.sent[node] = payloads[plan.rank, plan.targets]
            base = self.base_record if node not in self.delivered else None
            content = protocol.instruction_content(server_round, plan.rank, plan.targets, record, self.base_id, base)
            message = Message(content, dst_node_id=node, message_type=message_type)
            dispatch.down_by_node[node] = message_bytes(message)
            if base is not None:
                dispatch.carries_base.add(node)
                dispatch.bundle_bytes += self.base_size
            dispatch.messages.append(message)
        self._dispatches[server_round, message_type] = dispatch
        return dispatch.messages

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self._dispatch(self._sample(server_round), server_round, MessageType.TRAIN)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        if server_round != self.settings.rounds:
            return []  # one evaluation of every client, after the last round
        return self._dispatch(sorted(self.participation.taking_part), server_round, MessageType.EVALUATE)

    # -- receiving -------------------------------------------------------------------

    def _screen(
        self, dispatch: Dispatch, kind: str, replies: list[Message], validate: Callable[[Message], Accepted | Rejected]
    ) -> tuple[list[Accepted], list[dict]]:
        """Accepted replies, and the rejected ones with their reasons; a client whose reply
        was refused or never came missed the round (server/participation.py), and the run
        fails when too few are left."""
        accepted, rejected = [], []
        addressed = {m.metadata.message_id: m.metadata.dst_node_id for m in dispatch.messages if m.metadata.message_id}  # ids: set when sent
        replies = [_on_behalf_of(reply, addressed) for reply in replies]
        for reply in replies:
            node = reply.metadata.src_node_id
            verdict = validate(reply)
            if isinstance(verdict, Rejected):
                name = self.plans[node].name if node in self.plans else "?"
                rejected.append({"node": node, "client": name, "reason": verdict.reason})
                self.participation.miss(node, name, kind, verdict.reason)
                continue
            accepted.append(verdict)
            self.participation.answered(node)
            if node in dispatch.carries_base:
                self.delivered.add(node)
        for node in sorted(set(dispatch.sent) - {reply.metadata.src_node_id for reply in replies}):
            reason = f"no reply within {self.settings.round_timeout:g} s"
            rejected.append({"node": node, "client": self.plans[node].name, "reason": reason})
            self.participation.miss(node, self.plans[node].name, kind, reason)
        # Replies arrive in the order clients finish; aggregate in partition order so that
        # floating-point sums, and flexlora's SVD of them, repeat exactly for the same seed.
        accepted.sort(key=lambda verdict: self.plans[verdict.node_id].partition)
        return accepted, rejected

    def _entry(self, dispatch: Dispatch, server_round: int, kind: str, replies: list[Message], accepted: list[Accepted], rejected: list[dict]) -> dict:
        sizes = [message_bytes(reply) for reply in replies]
        bytes_up = sum(sizes)
        # the tensors alone, without Flower's framing: what a leaner transport could send
        payload_up = sum(
            array.numpy().nbytes
            for reply in replies
            if reply.has_content() and protocol.UPDATE in reply.content.array_records
            for array in reply.content.array_records[protocol.UPDATE].values()
        )
        sent = max(len(dispatch.messages), 1)
        return {
            "run": self.settings.name,
            "round": server_round,
            "kind": kind,
            "clients": len(dispatch.messages),
            "accepted": len(accepted),
            "rejected": rejected,
            "bytes_up": bytes_up,
            "bytes_down": dispatch.bytes_down,
            "bundle_bytes": dispatch.bundle_bytes,
            "bytes_up_per_client": bytes_up / max(len(replies), 1),
            "payload_up": payload_up,
            "bytes_down_per_client": (dispatch.bytes_down - dispatch.bundle_bytes) / sent,
            "personal": spread([a.metrics.personal for a in accepted]),
            "global": spread([a.metrics.global_metric for a in accepted]),
            "base": spread([a.metrics.base for a in accepted if a.metrics.base is not None]),
            **self._links(dispatch, replies, sizes),
        }

    def _links(self, dispatch: Dispatch, replies: list[Message], sizes: list[int]) -> dict:
        """Each reply's bytes as time on its device's uplink, and who went over its limits.

        Limits judge the update a client sends; the downlink (which includes the one-time
        base download) is reported as time only.
        """
        rows = []
        for reply, size in zip(replies, sizes):
            plan = self.plans.get(reply.metadata.src_node_id)
            if plan is None or plan.link is None:
                continue
            up = airtime(size, plan.link)
            down = airtime(dispatch.down_by_node.get(plan.node_id, 0), plan.link)
            rows.append(
                {
                    "client": plan.name,
                    "profile": plan.profile,
                    "link": plan.link.name,
                    "up_bytes": up.bytes,
                    "up_airtime_s": up.airtime_s,
                    "up_wall_s": up.wall_s,
                    "down_bytes": down.bytes,
                    "down_airtime_s": down.airtime_s,
                    "down_wall_s": down.wall_s,
                    "fits": up.fits,
                    "reason": up.reason,
                }
            )
        if not rows:
            return {}
        return {"links": rows, "over_link_limits": [{"client": r["client"], "reason": r["reason"]} for r in rows if not r["fits"]]}

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        dispatch = self._dispatches.pop((server_round, MessageType.TRAIN))
        replies = list(replies)
        accepted, rejected = self._screen(
            dispatch,
            f"round {server_round}",
            replies,
            lambda reply: validate_train_reply(reply, dispatch.shapes(reply.metadata.src_node_id), self.settings.wire),
        )
        results = [
            ClientResult(dispatch.sent[a.node_id], a.update, a.weight, self.plans[a.node_id].rank, self.plans[a.node_id].targets) for a in accepted
        ]
        results, bounded = self.influence.apply(
            results, [self.plans[a.node_id].name for a in accepted], [self._partition_size(self.plans[a.node_id].partition) for a in accepted]
        )
        for note in bounded:
            log(WARNING, "round %s: %s's %s bounded: %s", server_round, note["client"], note["bound"], {k: v for k, v in note.items() if k not in ("client", "bound")})
        needed = math.ceil(self.settings.min_replies * len(dispatch.messages) - 1e-9)
        if len(results) < needed:  # too few to stand for the round: skipped, not a crash
            errors, refused = None, f"{len(results)} of {len(dispatch.messages)} replies accepted, and --min-replies {self.settings.min_replies:g} needs {needed}: the round is skipped, the global state kept"
        else:
            self.state, errors, refused = apply_if_finite(self.state, results)
        if refused is not None:
            log(WARNING, "round %s: %s", server_round, refused)
        elif results:
            save_global(self.state, self.recorder.layout.global_state)  # what this round trained survives a later failure
        entry = self._entry(dispatch, server_round, "train", replies, accepted, rejected)
        entry["bounded"] = bounded
        entry["refused"] = refused
        total = sum(a.weight for a in accepted)
        entry["train_loss"] = sum(a.metrics.loss * a.weight for a in accepted) / total if total else None
        entry["aggregation_error"] = None if errors is None else {"mean": float(np.mean(list(errors.values()))), "layers": errors}
        entry["wall_time"] = time.perf_counter() - dispatch.started
        self.recorder.record(entry)
        log(INFO, "round %s: %d/%d replies accepted", server_round, len(accepted), len(replies))
        self.participation.check()
        metrics = MetricRecord({"loss": entry["train_loss"] or 0.0, "personal": (entry["personal"] or {"mean": 0.0})["mean"]})
        return None, metrics  # the state stays in self.state (see the module's docstring)

    def _partition_size(self, partition: int) -> int:
        """Training examples of a partition, as the server's copy of the task has them."""
        if partition not in self._partition_sizes:
            self._partition_sizes[partition] = len(task_of(self.settings).client(partition).train)
        return self._partition_sizes[partition]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        dispatch = self._dispatches.pop((server_round, MessageType.EVALUATE), None)
        if dispatch is None:
            return None  # no evaluation this round
        replies = list(replies)
        accepted, rejected = self._screen(dispatch, "final evaluation", replies, validate_evaluate_reply)
        entry = self._entry(dispatch, server_round, "final", replies, accepted, rejected)
        entry["wall_time"] = time.perf_counter() - dispatch.started
        self.recorder.record(entry)
        self.participation.check()
        return MetricRecord({k: entry[k]["mean"] for k in ("personal", "global") if entry[k]})

    def summary(self) -> None:
        log(INFO, "\t├──> method %s, wire %s, rank %s", self.settings.method, self.settings.wire, self.settings.rank)
        log(INFO, "\t└──> %d clients, %.0f%% per round", len(self.participation.taking_part), 100 * self.settings.fraction)
