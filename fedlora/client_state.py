"""What a client keeps between rounds, on its own disk: never sent anywhere.

- personal tensors: its personal adapter (``--personal``) and the trainable adapter
  tensors its method keeps local (fedsa's B; everything for the local-only baseline);
- the error-feedback residual of its compressed updates.

Flower's ``Context.state`` would be pickled on every call in simulation, so the state
lives in one safetensors file per client instead (no pickle), written atomically. It is
in the core because two sides read it: the client between rounds, and ``fedlora export``
to rebuild a client's personalized model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from fedlora.run_layout import client_state_file

RESIDUAL = "residual/"


@dataclass
class ClientState:
    path: Path
    personal: dict[str, np.ndarray] = field(default_factory=dict)
    residual: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, client_name: str) -> ClientState:
        path = client_state_file(directory, client_name)
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
