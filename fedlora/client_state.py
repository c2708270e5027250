"""What a client keeps between rounds, on its own disk: never sent anywhere.

- personal tensors: its personal adapter (``--personal``) and the trainable adapter
  tensors its method keeps local (fedsa's B; everything for the local-only baseline);
- the error-feedback residual of its compressed updates.

Flower's ``Context.state`` would be pickled on every call in simulation, so the state
lives in one safetensors file per client instead (no pickle), written atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

RESIDUAL = "residual/"


@dataclass
class ClientState:
    path: Path
    personal: dict[str, np.ndarray] = field(default_factory=dict)
    residual: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path, client_name: str) -> ClientState:
        path = directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", client_name) + ".safetensors")
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
