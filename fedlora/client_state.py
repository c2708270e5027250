"""What a client keeps between rounds, on its own disk: never sent anywhere.

- personal tensors: its personal adapter (``--personal``) and the trainable adapter
  tensors its method keeps local (fedsa's B; everything for the local-only baseline);
- the error-feedback residual of its compressed updates.

Flower's ``Context.state`` would be pickled on every call in simulation, so the state
lives in one safetensors file per client instead (no pickle), written atomically. It is
in the core because two sides read it: the client between rounds, and ``fedlora export``
to rebuild a client's personalized model.

State belongs to one federation on one base: it is filed under :func:`state_key`, so a
device that takes part in several federations, or in a later one on a new base, never
feeds one's personal adapter or residual into another. State filed under another key
is kept, never read, and reported (:func:`other_states`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from fedlora.run_layout import client_state_file, safe_name
from fedlora.settings import FederationSettings

#: the settings that decide what a client's state holds (besides the base): which tensors
#: it keeps, their shapes and initialisation, and what its residual compensates
STATE_SETTINGS = ("task", "corpus", "method", "wire", "personal", "fleet", "rank", "alpha", "targets", "seed")


def state_key(settings: FederationSettings, base_id: str | None) -> str:
    """The folder of one federation's state: its run name and a digest of the base and the
    settings that shape the state (``dense`` stands in for the full-model baseline's base)."""
    config = settings.to_run_config()
    shaping = {name: config[name.replace("_", "-")] for name in STATE_SETTINGS}
    digest = hashlib.sha256(json.dumps({"base": base_id or "dense", **shaping}, sort_keys=True).encode()).hexdigest()[:12]
    return f"{safe_name(settings.name)}-{digest}"


def other_states(directory: Path, key: str, client_name: str) -> list[Path]:
    """This client's state files of other federations or bases in ``directory``."""
    name = client_state_file(directory, key, client_name).name
    return sorted(path for path in directory.glob(f"*/{name}") if path.parent.name != key)


RESIDUAL = "residual/"


@dataclass
class ClientState:
    path: Path
    personal: dict[str, np.ndarray] = field(default_factory=dict)
    residual: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, key: str, client_name: str) -> ClientState:
        path = client_state_file(directory, key, client_name)
        if not path.is_file():
            return cls(path)
        tensors = load_file(path)
        residual = {k.removeprefix(RESIDUAL): v for k, v in tensors.items() if k.startswith(RESIDUAL)}
        personal = {k: v for k, v in tensors.items() if not k.startswith(RESIDUAL)}
        return cls(path, personal, residual)

    def save(self) -> None:
        tensors = {**self.personal, **{RESIDUAL + k: v for k, v in self.residual.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_suffix(".partial")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, staging)
        staging.replace(self.path)
