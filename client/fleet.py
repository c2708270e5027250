"""Which device each simulated client is: fleets of real board profiles.

A fleet is a named mix or a spec of ``profile:weight`` pairs, e.g.
``nrf52840:40,esp32s3:40,rpi4:20``. Client ``k`` of ``N`` gets its profile from a
deterministic assignment: counts proportional to the weights (largest remainders), then
shuffled with the run's seed — the same fleet, clients and seed always give the same
devices. A real device says what it is with ``--node-config "profile='rpi4'"`` instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedlora.client.profiles import load_profile, profile_names
from fedlora.errors import FedloraError

#: second word of the seed that shuffles a fleet's devices over its clients; other draws
#: from the run seed use ``[seed, client]`` or ``[seed, round]``, so a constant far above
#: any client index or round number gives the shuffle a stream of its own
FLEET_SEED_TAG = 0xF1EE7  # "fleet"

FLEETS = {
    "mcu": "nrf52840:1,stm32f746:1,esp32s3:1,rp2040:1",
    "pi": "rpi-zero-2w-headless:1,rpi4:1,rpi5:1",
    "mixed": "nrf52840:1,esp32s3:1,rpi-zero-2w-headless:1,rpi4:1,rpi5:1",
}


def parse_fleet(spec: str) -> list[tuple[str, float]]:
    """``(profile, weight)`` pairs of a fleet name or spec; every profile is checked."""
    text = FLEETS.get(spec, spec)
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = -1.0
        if value <= 0:
            raise FedloraError(f"fleet entry {item!r} needs a positive weight, as in 'rpi4:20'")
        load_profile(name)  # raises with the known profile names
        pairs.append((name, value))
    if not pairs:
        raise FedloraError(
            f"fleet {spec!r} names no device; use {', '.join(FLEETS)} or 'profile:weight,...' with profiles {', '.join(profile_names())}"
        )
    return pairs


@lru_cache(maxsize=16)
def fleet_assignment(spec: str, clients: int, seed: int) -> tuple[str, ...]:
    """The profile of every client, in partition order."""
    pairs = parse_fleet(spec)
    weights = np.array([weight for _, weight in pairs])
    exact = weights / weights.sum() * clients
    counts = np.floor(exact).astype(int)
    for index in np.argsort(-(exact - counts), kind="stable")[: clients - counts.sum()]:
        counts[index] += 1  # largest remainders first
    profiles = [name for (name, _), count in zip(pairs, counts) for _ in range(count)]
    order = np.random.default_rng([seed, FLEET_SEED_TAG]).permutation(clients)
    return tuple(profiles[i] for i in order)
