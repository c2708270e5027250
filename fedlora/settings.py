"""Settings of a federation run, shared by the ServerApp, the ClientApp and the CLI.

One validated dataclass. It travels to both apps as Flower's run config (flat keys with
dashes, e.g. ``local-steps``), whether the run is started by ``fedlora simulate`` or by
``flwr run .`` with ``[tool.flwr.app.config]`` in ``pyproject.toml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fedlora.errors import FedloraError
from fedlora.methods import get_method
from fedlora.train import OPTIMIZERS
from fedlora.wire import check_format


@dataclass(frozen=True)
class FederationSettings:
    # what is learned
    task: str = field(default="textlm", metadata={"help": "task name or dotted path"})
    corpus: str = field(default="", metadata={"help": "textlm: folder of text files ('' = stdlib)"})
    clients: int = field(default=100, metadata={"help": "number of clients (simulated nodes)"})
    # the federation
    method: str = field(default="fedit", metadata={"help": "fedit, ffa, core, fedsa, flexlora; baselines full, local"})
    rounds: int = field(default=8, metadata={"help": "federated rounds"})
    fraction: float = field(default=0.1, metadata={"help": "fraction of clients sampled per round"})
    wire: str = field(default="fp32", metadata={"help": "how updates travel: fp32, fp16, int8"})
    personal: bool = field(default=False, metadata={"help": "each client also keeps a personal adapter"})
    fleet: str = field(default="", metadata={"help": "device profiles of the clients: mcu, pi, mixed, or name:weight,... ('' = none)"})
    # the adapters and local training
    rank: int = field(default=4, metadata={"help": "adapter rank"})
    alpha: float = field(default=8.0, metadata={"help": "adapter scaling numerator (s = alpha / rank)"})
    targets: str = field(default="", metadata={"help": "regex of adapted layers ('' = the task's default)"})
    local_steps: int = field(default=30, metadata={"help": "optimizer steps per client per round"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    lr: float = field(default=0.01, metadata={"help": "learning rate"})
    optimizer: str = field(default="adam", metadata={"help": "sgd, momentum, adam"})
    # the base model
    param_ratio: float = field(default=0.5, metadata={"help": "parameter ratio of the factorized layers"})
    pretrain_steps: int = field(default=1500, metadata={"help": "dense pretraining steps"})
    heal_steps: int = field(default=300, metadata={"help": "healing (distillation) steps"})
    # bookkeeping
    seed: int = field(default=0, metadata={"help": "seed of every random choice"})
    out: str = field(default="runs/latest", metadata={"help": "output folder"})
    cache_dir: str = field(default="", metadata={"help": "cache folder ('' = $FEDLORA_CACHE or ~/.cache/fedlora)"})
    run_name: str = field(default="", metadata={"help": "name of this run in results ('' = the method)"})

    def __post_init__(self) -> None:
        method = get_method(self.method)
        check_format(self.wire)
        positive = {"clients": self.clients, "rounds": self.rounds, "rank": self.rank, "batch-size": self.batch_size}
        for name, value in positive.items():
            if value < 1:
                raise FedloraError(f"--{name} must be ≥ 1, got {value}")
        if not 0 < self.fraction <= 1:
            raise FedloraError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.local_steps < 0:
            raise FedloraError(f"--local-steps must be ≥ 0, got {self.local_steps}")
        if self.lr <= 0:
            raise FedloraError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise FedloraError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.personal and method.name == "full":
            raise FedloraError("--personal adds an adapter; the full-model baseline has none")
        if self.fleet and not method.heterogeneous_rank and method.name != "local":
            raise FedloraError(
                f"--fleet gives every client the rank and depth its device fits, and method {self.method!r} "
                "needs one rank for all; use --method flexlora (or --baseline local)"
            )

    @property
    def name(self) -> str:
        return self.run_name or self.method

    def replace(self, **changes: Any) -> FederationSettings:
        return dataclasses.replace(self, **changes)

    def to_run_config(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_run_config(cls, config: dict[str, Any]) -> FederationSettings:
        """Read settings from a Flower run config; unknown keys are refused by name."""
        fields = {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise FedloraError(f"unknown run-config keys: {', '.join(unknown)}; known keys: {', '.join(fields)}")
        values = {}
        for key, value in config.items():
            kind = type(fields[key].default)
            try:
                values[fields[key].name] = _coerce(value, kind)
            except (TypeError, ValueError) as exc:
                raise FedloraError(f"run-config key {key!r} must be {kind.__name__}, got {value!r}") from exc
        return cls(**values)


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return bool(value)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return kind(value)
