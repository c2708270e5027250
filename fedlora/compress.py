"""The base-model pipeline: pretrain → factorize → (heal) → quantize → bundle.

``build_base`` is the one entry point, used by ``fedlora compress`` and by every
federation run. Its result is cached under ``<cache>/bases/`` by a hash of everything
that determines it, so a simulation builds its base once and reuses it afterwards.
Metrics of every stage are measured on the server's public test split and recorded in
the bundle's manifest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from fedlora import __version__
from fedlora.bundle import FORMAT, BaseBundle, read_base_bundle, write_base_bundle
from fedlora.cache import config_hash
from fedlora.errors import FedloraError
from fedlora.factorize import LayerFactorization, check_factorization, factorize_model
from fedlora.heal import heal
from fedlora.metrics import evaluate
from fedlora.pretrain import PretrainConfig, pretrain_key, pretrained_model
from fedlora.quantize import quantize_base
from fedlora.rank import RankRule
from fedlora.tasks.base import Task, manual_seed_generator
from fedlora.train import TrainConfig

#: phase name, number of steps -> per-step callback (step, loss); for progress bars
ProgressFactory = Callable[[str, int], Callable[[int, float], None]]

DENSE, FACTORIZED, FACTORIZED_INT8, HEALED, HEALED_INT8 = (
    "dense fp32",
    "factorized fp32",
    "factorized int8",
    "healed fp32",
    "healed int8",
)


@dataclass(frozen=True)
class CompressConfig:
    """rank: how many singular values each layer keeps; targets: regex of the layers to
    factorize (None: the task's default); calibration_batches: batches of public data
    that make the SVD activation-aware (0: plain SVD of the weights); heal_steps:
    distillation steps (0 = no healing)."""

    rank: RankRule = field(default_factory=lambda: RankRule("budget", 0.5))
    targets: str | None = None
    calibration_batches: int = 32
    heal_steps: int = 300
    heal_lr: float = 3e-3
    heal_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.heal_steps < 0:
            raise FedloraError(f"heal steps must be ≥ 0, got {self.heal_steps}")
        if self.calibration_batches < 0:
            raise FedloraError(f"calibration batches must be ≥ 0, got {self.calibration_batches}")

    def heal_config(self) -> TrainConfig:
        return TrainConfig(steps=self.heal_steps, batch_size=self.heal_batch_size, lr=self.heal_lr, optimizer="adam")


@dataclass(frozen=True)
class CompressResult:
    bundle: BaseBundle
    layers: list[LayerFactorization]
    metrics: dict[str, dict[str, float]]  # stage -> metrics on the public test split
    cached: bool

    @property
    def final_stage(self) -> str:
        return HEALED_INT8 if HEALED_INT8 in self.metrics else FACTORIZED_INT8


def _quantized_copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    quantize_base(clone)
    return clone


def build_base(
    task: Task,
    pretrain: PretrainConfig,
    compress: CompressConfig,
    seed: int,
    cache: Path,
    progress: ProgressFactory | None = None,
) -> CompressResult:
    """Build (or fetch from the cache) the frozen INT8 factorized base of ``task``."""
    targets = compress.targets or task.default_targets
    check_factorization(task.build_model(), targets, compress.rank)  # before any training
    key = config_hash(
        {
            "format": FORMAT,  # a new bundle format never reuses an old cached bundle
            "version": __version__,
            "pretrain": pretrain_key(task, pretrain, seed),
            "compress": {**asdict(compress), "rank": asdict(compress.rank), "targets": targets},
        }
    )
    directory = cache / "bases" / f"{task.name}-{key}"
    if directory.is_dir():
        bundle = read_base_bundle(directory)
        layers = [LayerFactorization(**layer) for layer in bundle.manifest["layers"]]
        return CompressResult(bundle, layers, bundle.manifest["provenance"]["metrics"], cached=True)

    step = (lambda name, total: progress(name, total)) if progress else (lambda name, total: None)
    test = task.public().test
    dense, _ = pretrained_model(task, pretrain, seed, cache, on_step=step("pretrain", pretrain.steps))
    metrics = {DENSE: evaluate(dense, test)}

    student = copy.deepcopy(dense)
    generator = manual_seed_generator(seed)
    calibration = [task.public().train.sample(compress.heal_batch_size, generator)[0] for _ in range(compress.calibration_batches)]
    layers = factorize_model(student, targets, compress.rank, calibration or None)
    metrics[FACTORIZED] = evaluate(student, test)
    metrics[FACTORIZED_INT8] = evaluate(_quantized_copy(student), test)
    if compress.heal_steps:
        heal(student, dense, task.public().train, compress.heal_config(), seed, on_step=step("heal", compress.heal_steps))
        metrics[HEALED] = evaluate(student, test)
    int8_tensors = quantize_base(student)
    if compress.heal_steps:
        metrics[HEALED_INT8] = evaluate(student, test)

    provenance = {
        "seed": seed,
        "pretrain": asdict(pretrain),
        "compress": {**asdict(compress), "rank": asdict(compress.rank), "targets": targets},
        "metrics": metrics,
    }
    bundle = write_base_bundle(directory, student, int8_tensors, task, layers, provenance)
    return CompressResult(bundle, layers, metrics, cached=False)
