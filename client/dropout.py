"""Simulated dropouts (``--dropout P``): clients that crash mid-run, to test the failure policy.

Each sampled client fails each training round with probability ``P``, drawn from the run's
seed, the round and the partition — so a run drops the same clients every time, and a test
can count the failures it must see. The client fails as a crashed device's ClientApp
would: with an error, which the server records as a missed round.
"""

from __future__ import annotations

import numpy as np

from fedlora.settings import FederationSettings

#: keeps the dropout draws apart from every other use of the run's seed
DROPOUT_TAG = 0xD80


def drops_out(settings: FederationSettings, server_round: int, partition: int) -> bool:
    """Whether ``partition`` fails training round ``server_round`` of this run."""
    if settings.dropout <= 0:
        return False
    return bool(np.random.default_rng([settings.seed, server_round, partition, DROPOUT_TAG]).random() < settings.dropout)
