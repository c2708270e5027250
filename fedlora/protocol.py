"""The Flower messages fedlora exchanges: one builder and one parser per message kind.

This module is the protocol's only specification. Server, client, planner and tests build
and read messages through it, so a record or key name is written here and nowhere else.

| kind (Flower type)     | direction      | records                                                      |
|------------------------|----------------|--------------------------------------------------------------|
| query (``query``)      | server → node  | ``config``: base-id, the run's base (none: no base)          |
| description            | node → server  | ``plan``: partition, name, rank, examples; holds-base, state |
|                        |                | where not the default; with a device: profile, targets,      |
|                        |                | describe — or refused; ``link``: its uplink                  |
| instruction (``train``,| server → node  | ``global``: tensors in the wire format; ``config``:          |
| ``evaluate``)          |                | server-round, rank, targets, base-id; ``base`` on first      |
|                        |                | contact: the base bundle's files as uint8 arrays             |
| train reply            | node → server  | ``update``: trained − received, wire format; ``metrics``     |
| evaluate reply         | node → server  | ``metrics``                                                  |

``metrics`` (a MetricRecord) holds ``num-examples`` (the client's weight), ``global`` (the
task metric of what arrived), ``personal`` (after local training), ``loss`` (train replies)
and ``base`` (evaluate replies: the untouched base).

Builders take typed values and return a :class:`RecordDict`; parsers take a RecordDict and
return typed values or raise :class:`MalformedMessage` with the reason. Parsers check
*form* (records present, values of the right type and range); whether the content fits
what the server sent is for ``server/validation.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedlora.links import Link, link_problem
from fedlora.records import from_record, to_record

# record names
QUERY_CONFIG = "config"
PLAN = "plan"
LINK = "link"
GLOBAL = "global"
CONFIG = "config"
BASE = "base"
UPDATE = "update"
METRICS = "metrics"

# metric names
NUM_EXAMPLES = "num-examples"
LOSS = "loss"
GLOBAL_METRIC = "global"
PERSONAL_METRIC = "personal"
BASE_METRIC = "base"


class MalformedMessage(ValueError):
    """A message whose records do not have the protocol's form; the text says what is wrong."""


# -- handshake ------------------------------------------------------------------------


def query_content(base_id: str | None = None) -> RecordDict:
    """The server's question to a node: who are you, what will you train, do you hold this
    base already, and what state do you have for this federation?"""
    return RecordDict({QUERY_CONFIG: ConfigRecord({} if base_id is None else {"base-id": base_id})})


def parse_query(content: RecordDict) -> str | None:
    """The base id a query names (None: the run has no base)."""
    if QUERY_CONFIG not in content.config_records:
        raise MalformedMessage(f"a query carries the record {QUERY_CONFIG!r}, got {sorted(content)}")
    return _text(content.config_records[QUERY_CONFIG], "base-id", required=False) or None


#: what a node has of its state for this federation and base
STATE_FRESH = "fresh"  # nothing: it starts from the global adapter alone
STATE_RESUMED = "resumed"  # its personal adapter and residual from earlier rounds
STATE_FRESH_OTHER_KEPT = "fresh, other state kept"  # nothing for this one; another federation's is kept, unused


@dataclass(frozen=True)
class NodeDescription:
    """A node's answer to the query.

    ``rank`` and ``targets`` are what it will train (its device may cap them; ``targets``
    None: the run's adapter targets). ``refused`` is set, and nothing else about training
    is, when no plan fits its device's memory.
    """

    partition: int
    name: str
    rank: int
    examples: int
    profile: str | None = None
    targets: str | None = None
    plan: str | None = None  # the device plan, for people
    refused: str | None = None
    link: Link | None = None
    holds_base: bool = False  # it holds the queried base in its own cache: do not send it
    state: str = STATE_FRESH


def description_content(description: NodeDescription) -> RecordDict:
    plan = ConfigRecord({"partition": description.partition, "name": description.name, "rank": description.rank, "examples": description.examples})
    if description.holds_base:
        plan["holds-base"] = True
    if description.state != STATE_FRESH:
        plan["state"] = description.state
    if description.profile is not None:  # a device with a memory budget: its plan, or why none fits
        plan["profile"] = description.profile
        if description.refused is not None:
            plan["refused"] = description.refused
        else:
            plan["targets"] = description.targets or ""
            plan["describe"] = description.plan or ""
    content = RecordDict({PLAN: plan})
    if description.link is not None:
        content[LINK] = ConfigRecord(dataclasses.asdict(description.link))
    return content


def described_name(content: RecordDict) -> str | None:
    """The client name a description gives, if any: to name a node whose reply is otherwise unusable."""
    plan = content.config_records.get(PLAN)
    name = None if plan is None else plan.get("name")
    return name if isinstance(name, str) and name else None


def parse_description(content: RecordDict) -> NodeDescription:
    if PLAN not in content.config_records:
        raise MalformedMessage(f"no {PLAN!r} record in its reply")
    plan = content.config_records[PLAN]
    link = None
    if LINK in content.config_records:
        try:
            link = Link(**dict(content.config_records[LINK]))
        except TypeError as exc:
            raise MalformedMessage(f"its uplink description is malformed ({exc})") from exc
        problem = link_problem(link)
        if problem is not None:
            raise MalformedMessage(f"its uplink description is unusable: {problem}")
    return NodeDescription(
        partition=_whole(plan, "partition", minimum=0),
        name=_text(plan, "name"),
        rank=_whole(plan, "rank", minimum=1),
        examples=_whole(plan, "examples", minimum=0),
        profile=_text(plan, "profile", required=False),
        targets=_text(plan, "targets", required=False) or None,
        plan=_text(plan, "describe", required=False),
        refused=_text(plan, "refused", required=False) or None,
        link=link,
        holds_base=_flag(plan, "holds-base"),
        state=_text(plan, "state", required=False) or STATE_FRESH,
    )


# -- train and evaluate instructions ----------------------------------------------------


def base_record(files: dict[str, bytes]) -> ArrayRecord:
    """The base bundle's files as uint8 arrays, built once and sent to each new node."""
    return to_record({name: np.frombuffer(data, dtype=np.uint8) for name, data in files.items()})


@dataclass(frozen=True)
class Instruction:
    """What a node is asked to train (or evaluate) on, as it arrives.

    ``payload`` is the global tensors in the run's wire format; ``base_files`` is the base
    bundle, present on first contact only.
    """

    server_round: int
    rank: int
    targets: str | None
    payload: dict[str, np.ndarray]
    base_id: str | None = None
    base_files: dict[str, bytes] | None = None


def instruction_content(
    server_round: int, rank: int, targets: str | None, payload: ArrayRecord, base_id: str | None, base: ArrayRecord | None
) -> RecordDict:
    """A train or evaluate message's content. ``payload`` and ``base`` are ready records, so
    the server builds each once per round (payload) or run (base) and shares it."""
    config = ConfigRecord({"server-round": server_round, "rank": rank, "targets": targets or ""})
    content = RecordDict({GLOBAL: payload, CONFIG: config})
    if base_id is not None:
        config["base-id"] = base_id
        if base is not None:
            content[BASE] = base
    return content


def parse_instruction(content: RecordDict) -> Instruction:
    if CONFIG not in content.config_records or GLOBAL not in content.array_records:
        raise MalformedMessage(f"an instruction carries the records {GLOBAL!r} and {CONFIG!r}, got {sorted(content)}")
    config = content.config_records[CONFIG]
    base_files = None
    if BASE in content.array_records:
        base_files = {name: array.numpy().tobytes() for name, array in content.array_records[BASE].items()}
    return Instruction(
        server_round=_whole(config, "server-round", minimum=0),
        rank=_whole(config, "rank", minimum=1),
        targets=_text(config, "targets", required=False) or None,
        payload=from_record(content.array_records[GLOBAL]),
        base_id=_text(config, "base-id", required=False) or None,
        base_files=base_files,
    )


def instruction_round(content: RecordDict) -> int:
    """The round an instruction is for, without decoding its arrays."""
    if CONFIG not in content.config_records:
        raise MalformedMessage(f"an instruction carries the record {CONFIG!r}, got {sorted(content)}")
    return _whole(content.config_records[CONFIG], "server-round", minimum=0)


# -- replies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientMetrics:
    """What a client reports with its reply. ``examples`` weighs it in aggregation."""

    examples: int
    global_metric: float
    personal: float
    loss: float | None = None  # train replies
    base: float | None = None  # evaluate replies: the untouched base


def metrics_record(metrics: ClientMetrics) -> MetricRecord:
    record = MetricRecord({NUM_EXAMPLES: metrics.examples})
    if metrics.loss is not None:
        record[LOSS] = float(metrics.loss)
    if metrics.base is not None:
        record[BASE_METRIC] = metrics.base
    record[GLOBAL_METRIC] = metrics.global_metric
    record[PERSONAL_METRIC] = metrics.personal
    return record


def train_reply_content(update: dict[str, np.ndarray], metrics: ClientMetrics) -> RecordDict:
    """``update`` is already in the wire format (trained − received, encoded)."""
    return RecordDict({UPDATE: to_record(update), METRICS: metrics_record(metrics)})


def evaluate_reply_content(metrics: ClientMetrics) -> RecordDict:
    return RecordDict({METRICS: metrics_record(metrics)})


def parse_metrics(content: RecordDict, train: bool) -> ClientMetrics:
    """A reply's metrics: a positive whole ``num-examples`` and finite numbers."""
    if METRICS not in content.metric_records:
        raise MalformedMessage(f"no {METRICS!r} record")
    record = content.metric_records[METRICS]
    examples = record.get(NUM_EXAMPLES)
    if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
        raise MalformedMessage(f"{NUM_EXAMPLES} must be a positive whole number, got {examples!r}")
    for key, value in record.items():
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise MalformedMessage(f"metric {key!r} is not finite ({value})")
    return ClientMetrics(
        examples=examples,
        global_metric=_number(record, GLOBAL_METRIC),
        personal=_number(record, PERSONAL_METRIC),
        loss=_number(record, LOSS) if train else None,
        base=None if train or BASE_METRIC not in record else _number(record, BASE_METRIC),
    )


def parse_update(content: RecordDict) -> dict[str, np.ndarray]:
    """A train reply's update arrays, still in the wire format."""
    if UPDATE not in content.array_records:
        raise MalformedMessage(f"no {UPDATE!r} array record")
    try:
        return from_record(content.array_records[UPDATE])
    except Exception as exc:  # a corrupted Array fails to deserialize
        raise MalformedMessage(f"update arrays cannot be read ({exc})") from exc


# -- failures -------------------------------------------------------------------------


def failure_reason(partition: int | None, error: BaseException) -> str:
    """A client's error as one line that names the client, so the server can say who failed
    even when the node never described itself."""
    who = f"partition {partition}" if partition is not None else "a node without a partition-id"
    text = " ".join(str(error).split()) or type(error).__name__
    return f"[{who}] {text}"


def failed_partition(reason: str) -> int | None:
    """The partition a failure reason names, if any."""
    match = re.search(r"\[partition (\d+)\]", reason)
    return int(match.group(1)) if match else None


# -- field readers ------------------------------------------------------------------------


def _whole(record, key: str, minimum: int) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MalformedMessage(f"{key!r} must be a whole number ≥ {minimum}, got {value!r}")
    return value


def _text(record, key: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise MalformedMessage(f"{key!r} must be text, got {value!r}")
    return value


def _flag(record, key: str) -> bool:
    value = record.get(key, False)
    if not isinstance(value, bool):
        raise MalformedMessage(f"{key!r} must be true or false, got {value!r}")
    return value


def _number(record, key: str) -> float:
    value = record.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise MalformedMessage(f"metric {key!r} must be a number, got {value!r}")
    return float(value)
