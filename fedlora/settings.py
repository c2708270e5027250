"""Settings of a federation run, shared by the ServerApp, the ClientApp and the CLI.

One validated dataclass, the one place where each setting's default and help are stated.
It travels to both apps as Flower's run config (flat keys with dashes, e.g.
``local-steps``), whether the run is started by ``fedlora simulate`` or by ``flwr run .``
with ``[tool.flwr.app.config]`` in ``pyproject.toml``; the CLI's options are derived from
it (:mod:`fedlora.cli.settings_options`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from fedlora.errors import FedloraError
from fedlora.wire import check_format

#: examples in one local step, at most: beyond it a step's activations outgrow any machine
MAX_BATCH_SIZE = 65_536
#: how a round's updates can be combined (server/robust.py implements them)
ROBUST_RULES = ("mean", "median", "trimmed", "krum")


def _setting(default: Any, help: str, minimum: float | None = None) -> Any:
    """A field with its help text (shown by the CLI) and, for numbers, the smallest value
    the CLI accepts. Other constraints are checked in ``__post_init__``."""
    return field(default=default, metadata={"help": help, "min": minimum})


@dataclass(frozen=True)
class FederationSettings:
    """Every setting of a run, with its default: the CLI's options, the run config's keys
    and the pyproject's ``[tool.flwr.app.config]`` are derived from (and tested against)
    these fields."""

    # what is learned
    task: str = _setting("textlm", "Built-in task (textlm, digits, synthetic) or a dotted path 'package.module:TaskClass'.")
    corpus: str = _setting("", "textlm only: a folder of your own text files (one client per file or subfolder) instead of the Python standard library ('' = the standard library).")
    clients: int = _setting(100, "Number of clients (simulated Flower SuperNodes).", minimum=1)
    # the federation
    method: str = _setting("fedit", "Federation method: fedit, ffa, core, fedsa or flexlora (baselines: full, local).")
    rounds: int = _setting(8, "Federated rounds.", minimum=1)
    fraction: float = _setting(0.1, "Fraction of clients that train in each round.")
    wire: str = _setting("fp32", "How updates travel: fp32, fp16 or int8 (per-row scales, error feedback).")
    personal: bool = _setting(False, "Each client also keeps a personal adapter that never leaves it.")
    min_clients: float = _setting(1.0, "Fraction of the clients able to take part (all but those whose device fits no plan) that must answer and stay; below it the run fails, naming every lost client and why (1.0: any lost client fails the run).")
    robust: str = _setting("mean", "How a round's updates are combined: mean (weighted, FedAvg), or a robust rule: median, trimmed (drops 20% at each end) or krum.")
    norm_bound: float = _setting(3.0, "Scale down any update whose L2 norm exceeds this many times the median norm of the last 3 rounds' updates, so no client can dominate the aggregate (0: off).", minimum=0)
    max_absences: int = _setting(0, "Rounds in a row a client may miss (an error, a bad or late reply) and still come back; beyond it the client is lost (0: the first miss loses it).", minimum=0)
    min_replies: float = _setting(0.0, "Fraction of a round's sampled clients whose replies must be accepted for the round to count; below it the round is skipped, the global state kept (0: any accepted reply counts).")
    round_timeout: float = _setting(3600.0, "Seconds the server waits for the handshake's and each round's replies; a client that has not answered by then missed the round.")
    dropout: float = _setting(0.0, "Testing the failure policy: each sampled client fails each round with this probability (seeded), as a crashed device would.")
    fleet: str = _setting("", "Give each client a device profile and train the plan that fits it: mcu, pi, mixed, or e.g. nrf52840:40,esp32s3:40,rpi4:20 (needs --method flexlora; '' = no devices).")
    # the adapters and local training
    rank: int = _setting(4, "Adapter rank.", minimum=1)
    alpha: float = _setting(8.0, "Adapter scaling numerator (s = alpha / rank).")
    targets: str = _setting("", "Regex of the adapted layers ('' = the task's default; textlm: ffn\\.fc2$).")
    local_steps: int = _setting(30, "Optimizer steps per client per round.", minimum=0)
    batch_size: int = _setting(16, "Examples per local step.", minimum=1)
    lr: float = _setting(0.01, "Local learning rate.")
    optimizer: str = _setting("adam", "Local optimizer: sgd, momentum or adam.")
    # the base model
    param_ratio: float = _setting(0.5, "Keep the largest rank whose factors hold at most this fraction of the dense parameters of the factorized layers.")
    pretrain_steps: int = _setting(1500, "Optimizer steps of dense pretraining on public data.", minimum=0)
    heal_steps: int = _setting(300, "Distillation steps that heal the factorized model (0: no healing).", minimum=0)
    # bookkeeping
    seed: int = _setting(0, "Seed for every random choice; the same seed gives the same result.")
    out: str = _setting("runs/latest", "Folder for rounds, summaries, the plot and Flower's log.")
    cache_dir: str = _setting("", "Cache for pretrained models and base bundles ('' = $FEDLORA_CACHE or ~/.cache/fedlora).")
    run_name: str = _setting("", "Name of this run in results ('' = the method).")

    def __post_init__(self) -> None:
        # Imported here, not at the top, so that reading the fields (the CLI's help) does
        # not import torch: the method table and the optimizers live next to torch code.
        from fedlora.adapters.keys import layer_pattern
        from fedlora.methods import get_method
        from fedlora.train import OPTIMIZERS

        method = get_method(self.method)
        check_format(self.wire)
        positive = {"clients": self.clients, "rounds": self.rounds, "rank": self.rank, "batch-size": self.batch_size}
        for name, value in positive.items():
            if value < 1:
                raise FedloraError(f"--{name} must be ≥ 1, got {value}")
        if self.robust not in ROBUST_RULES:
            raise FedloraError(f"--robust {self.robust!r}: choose one of {', '.join(ROBUST_RULES)}")
        if not math.isfinite(self.norm_bound) or self.norm_bound < 0:
            raise FedloraError(f"--norm-bound must be a finite number ≥ 0 (0: off), got {self.norm_bound}")
        for name, value in {"min-replies": self.min_replies, "dropout": self.dropout}.items():
            if not 0 <= value <= 1:
                raise FedloraError(f"--{name} must be a fraction in [0, 1], got {value}")
        if not math.isfinite(self.round_timeout) or self.round_timeout <= 0:
            raise FedloraError(f"--round-timeout must be a positive number of seconds, got {self.round_timeout}")
        if self.max_absences < 0:
            raise FedloraError(f"--max-absences must be ≥ 0, got {self.max_absences}")
        if not 0 < self.fraction <= 1:
            raise FedloraError(f"--fraction must be in (0, 1], got {self.fraction}")
        if not 0 < self.min_clients <= 1:
            raise FedloraError(f"--min-clients must be a fraction in (0, 1], got {self.min_clients}")
        if self.local_steps < 0:
            raise FedloraError(f"--local-steps must be ≥ 0, got {self.local_steps}")
        for name, value in {"lr": self.lr, "alpha": self.alpha}.items():
            if not math.isfinite(value) or value <= 0:
                raise FedloraError(f"--{name} must be a finite number > 0, got {value}")
        if not math.isfinite(self.param_ratio) or not 0 < self.param_ratio <= 1:
            raise FedloraError(f"--param-ratio must be in (0, 1] (a base no larger than the dense model), got {self.param_ratio}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise FedloraError(f"--batch-size {self.batch_size} is more than a local step can hold; use at most {MAX_BATCH_SIZE:,}")
        if self.targets:
            layer_pattern(self.targets)
        if self.optimizer not in OPTIMIZERS:
            raise FedloraError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.personal and method.dense:
            raise FedloraError("--personal adds an adapter; the full-model baseline has none")
        if self.fleet and not method.heterogeneous_rank and not method.trains_alone:
            raise FedloraError(
                f"--fleet gives every client the rank and depth its device fits, and method {self.method!r} "
                "needs one rank for all; use --method flexlora (or --baseline local)"
            )

    @classmethod
    def field_help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)

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
