"""Dirichlet label skew: split a labelled pool among clients with uneven class mixes.

The standard non-IID partition of federated-learning benchmarks (Hsu et al., 2019; the
NIID-Bench "distribution-based label imbalance"): for every class, draw client shares
``p ~ Dir(alpha·1)`` and deal that class's examples out in those shares. Small ``alpha``
gives each client a few dominant classes; large ``alpha`` approaches an IID split.
"""

from __future__ import annotations

import numpy as np


def dirichlet_label_skew(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator, min_size: int
) -> list[np.ndarray]:
    """Disjoint index arrays (one per client, sorted) covering every index of ``labels``.

    Every client gets at least ``min_size`` examples: a client left short by the draw
    takes random examples from the currently largest client. This always terminates (unlike
    redrawing until lucky) and only slightly dilutes the skew. Requires
    ``num_clients * min_size <= len(labels)``.
    """
    if num_clients * min_size > len(labels):
        raise ValueError(f"{len(labels)} examples cannot give {num_clients} clients {min_size} each")
    owner = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        for client, part in enumerate(np.split(members, cuts)):
            owner[part] = client
    sizes = np.bincount(owner, minlength=num_clients)
    for client in np.flatnonzero(sizes < min_size):
        while sizes[client] < min_size:
            donor = int(np.argmax(sizes))
            moved = rng.choice(np.flatnonzero(owner == donor))
            owner[moved] = client
            sizes[donor] -= 1
            sizes[client] += 1
    return [np.flatnonzero(owner == client) for client in range(num_clients)]
