"""The attack the poisoning tests share: 2 of 10 clients send scaled (×1000) or huge (3e38)
updates and claim 10¹² examples, as a Flower client mod."""

import numpy as np
from flwr.app import RecordDict

from fedlora import protocol
from fedlora.records import from_record, to_record

ATTACKERS = {1: 1000.0, 6: 3e38}  # partition: what its update is multiplied by, or set to


def poisoning_mod(message, context, call_next):
    """Attacker clients multiply (or replace) their update and claim 10¹² examples."""
    reply = call_next(message, context)
    partition = context.node_config["partition-id"]
    if partition not in ATTACKERS or message.metadata.message_type != "train" or reply.has_error():
        return reply
    update = from_record(reply.content.array_records[protocol.UPDATE])
    factor = ATTACKERS[partition]
    poisoned = {k: (np.full_like(v, factor) if factor > 1e30 else v * factor).astype(v.dtype) for k, v in update.items()}
    metrics = dict(reply.content.metric_records[protocol.METRICS])
    metrics[protocol.NUM_EXAMPLES] = 10**12
    content = RecordDict({protocol.UPDATE: to_record(poisoned)})
    content[protocol.METRICS] = type(reply.content.metric_records[protocol.METRICS])(metrics)
    reply.content = content
    return reply
