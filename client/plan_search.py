"""The search: the best training configuration that fits a device.

A :class:`Planner` dry-runs configurations of one model (:mod:`.memory_trace`) and
predicts each one's memory (:mod:`.memory_model`). A plan fits when everything but the
frozen base fits the usable RAM (the base too, where it lives in RAM) and the base fits
the usable flash. When the requested configuration does not fit, :meth:`Planner.plan`
searches for the best one that does. Best means, in order: the most adapted layers
(counted from the top: the path to the loss stays short), the highest rank, the requested
optimizer (else the one with less state), no activation checkpointing (it costs a second
forward pass), the largest micro-batch (gradient accumulation keeps the effective batch).
Memory only grows along each of these levers, so the search fixes them one at a time and
needs a few dozen dry runs at most. If even the smallest configuration does not fit, it
refuses with :class:`PlanRefused`, naming the largest component and the budget.

The plan is a recipe the trainer follows: ``plan.adapter_config`` and ``plan.train_config``
are what ``attach_adapters`` and ``train`` take.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from fedlora.adapters import GLOBAL, PERSONAL, AdapterConfig, attach_adapters
from fedlora.adapters.keys import is_adapter_key
from fedlora.client.memory_model import MemoryBreakdown, step_memory
from fedlora.client.memory_trace import StepTrace, example_bytes, execution_order, meta_base, trace_step
from fedlora.client.profiles import DeviceProfile, format_bytes, load_profile
from fedlora.errors import FedloraError
from fedlora.tasks.datasets import Batch
from fedlora.train import LossFn, TrainConfig, checkpoint_units, task_loss

#: optimizers from the most state to the least; the search only ever moves right
OPTIMIZER_ORDER = ("adam", "momentum", "sgd")
#: what the search may change, most valued first (it gives up the last ones first)
LEVERS = ("adapted layers", "rank", "optimizer", "activation checkpointing", "micro-batch")
#: a one-line description names the adapted layers up to this many (beyond, it counts
#: them or names the first and last), so it stays one line
LAYERS_NAMED = 3


# -- what is asked for -------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    """The training a client would like to run.

    adapter:  the adapter (variant, rank, alpha, targets, seed); ``targets`` None = every
              factorized layer
    train:    local training (batch size, micro-batch, optimizer, checkpointing, lr, steps)
    personal: the client also trains a personal adapter on the same layers (``--personal``)
    levers:   what the search may change (a subset of :data:`LEVERS`); e.g. leave out
              "adapted layers" so that every client of a federation adapts the same layers
    """

    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    personal: bool = False
    levers: tuple[str, ...] = LEVERS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.levers) - set(LEVERS))
        if unknown:
            raise FedloraError(f"unknown planner levers {', '.join(map(repr, unknown))}; choose from {', '.join(LEVERS)}")


# -- what comes back ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One lever the planner moved away from the request."""

    lever: str
    requested: str
    planned: str

    def describe(self) -> str:
        return f"{self.lever}: {self.requested} → {self.planned}"


@dataclass(frozen=True)
class Plan:
    """A training configuration for one device, with its predicted memory.

    adapter_config / train_config: what ``attach_adapters`` and ``train`` take to run it
    adapted_layers: the layers that carry adapters, in forward order
    adapter_shapes: the global adapter's trained tensors (name → shape): what may travel
    changes:        what differs from the request
    """

    profile: DeviceProfile
    adapter_config: AdapterConfig
    train_config: TrainConfig
    personal: bool
    adapted_layers: tuple[str, ...]
    adapter_shapes: dict[str, tuple[int, ...]]
    breakdown: MemoryBreakdown
    changes: tuple[Change, ...] = ()
    margin: float = 0.0  # fraction of the usable RAM kept free for what the prediction misses

    @property
    def budget_bytes(self) -> int:
        """RAM the training step may use: the profile's usable RAM less the safety margin."""
        return int(self.profile.usable_ram * (1 - self.margin))

    @property
    def adapter_targets(self) -> str | None:
        return self.adapter_config.targets

    @property
    def rank(self) -> int:
        return self.adapter_config.rank

    @property
    def micro_batch(self) -> int:
        return self.train_config.micro_batch or self.train_config.batch_size

    @property
    def optimizer(self) -> str:
        return self.train_config.optimizer

    @property
    def checkpointing(self) -> bool:
        return self.train_config.checkpointing

    @property
    def ram_fits(self) -> bool:
        return self.breakdown.training_bytes <= self.budget_bytes

    @property
    def flash_fits(self) -> bool:
        return self.breakdown.frozen_in != "flash" or self.breakdown.frozen_bytes <= self.profile.usable_flash

    @property
    def fits(self) -> bool:
        return self.ram_fits and self.flash_fits

    def describe(self) -> str:
        """One line: the configuration."""
        layers = self.adapted_layers
        where = f"{len(layers)} layer{'s' if len(layers) != 1 else ''}" + (f" ({', '.join(layers)})" if len(layers) <= LAYERS_NAMED else "")
        accumulate = self.train_config.accumulation
        return (
            f"{where}, rank {self.rank}, micro-batch {self.micro_batch}"
            + (f" × {accumulate} accumulated" if accumulate > 1 else "")
            + f", {self.optimizer}" + (", checkpointing" if self.checkpointing else "")
        )

    def verdict(self) -> str:
        b, p = self.breakdown, self.profile
        budget = f"{format_bytes(self.budget_bytes)} budget ({format_bytes(p.usable_ram)} usable, {self.margin:.0%} margin)" if self.margin else f"{format_bytes(p.usable_ram)} usable RAM"
        ram = f"needs {format_bytes(b.training_bytes)} of {budget}"
        flash = f"; base {format_bytes(b.frozen_bytes)} of {format_bytes(p.usable_flash)} usable flash" if b.frozen_in == "flash" else ""
        return f"{'fits' if self.fits else 'does not fit'} {p.name}: {ram}{flash}"

    def update_bytes(self, travels=None, wire: str = "int8") -> int:
        """Raw payload of one update in ``wire`` format (``fedlora.wire``; int8 = int8 values
        + one float32 scale per rank slice + an 8-byte layout digest). ``travels(name)``
        picks the tensors, e.g. ``get_method("ffa").travels``; by default every trained
        tensor of the global adapter travels (fedit, flexlora). The Flower message around
        it adds about 1 KB (:func:`.device_plan.update_message_bytes`)."""
        from fedlora.wire import FLOAT_DTYPES, check_format, frame_bytes

        picked = {name: shape for name, shape in self.adapter_shapes.items() if travels is None or travels(name)}
        if check_format(wire) == "int8":
            return frame_bytes(picked)
        width = FLOAT_DTYPES[wire].itemsize
        return sum(width * int(torch.Size(shape).numel()) for shape in picked.values())


class PlanRefused(FedloraError):
    """No configuration fits the device. ``closest`` is the smallest configuration's plan
    (None after pickling, e.g. across processes: the message says it all)."""

    def __init__(self, message: str, closest: Plan | None = None):
        super().__init__(message)
        self.closest = closest


# -- the planner -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    layers: tuple[str, ...]
    rank: int
    optimizer: str
    checkpointing: bool
    micro_batch: int


def _check_margin(margin: float) -> float:
    if not 0 <= margin < 1:
        raise FedloraError(f"the safety margin is a fraction of the usable RAM in [0, 1), got {margin}")
    return margin


def _halvings(start: int) -> list[int]:
    values = [start]
    while values[-1] > 1:
        values.append(values[-1] // 2)
    return values


def _exact_targets(layers: tuple[str, ...]) -> str:
    return "^(?:" + "|".join(re.escape(name) for name in layers) + ")$"


class Planner:
    """Plans for one model (its frozen base, on the meta device) and one kind of example.

    Dry runs are cached per configuration, so one planner serves a whole fleet of devices.
    ``example`` is a batch as the dataset produces it (``data.sample(n, generator)``): its
    shapes, dtypes and layout are what the dry runs use.
    """

    def __init__(self, model: nn.Module, example: Batch, loss_fn: LossFn = task_loss):
        self.base = meta_base(model)
        self.example = example
        self.loss_fn = loss_fn
        self.layer_order = execution_order(self.base, example)
        self.can_checkpoint = bool(checkpoint_units(self.base))
        self._example_bytes = example_bytes(example)
        self._traces: dict[tuple, tuple[StepTrace, nn.Module]] = {}

    # -- what can be adapted

    def targetable(self, request: PlanRequest) -> list[str]:
        """Layers the request's targets select, in the order the forward pass calls them."""
        if request.adapter.targets is None:
            layers = list(self.layer_order)
        else:
            pattern = re.compile(request.adapter.targets)
            layers = [name for name in self.layer_order if pattern.search(name)]
        if not layers:
            raise FedloraError(
                f"adapter targets {request.adapter.targets!r} match no factorized layer; the model's are: {', '.join(self.layer_order)}"
            )
        return layers

    # -- one configuration

    def _model(self, choice: _Choice, request: PlanRequest) -> nn.Module:
        model = copy.deepcopy(self.base)
        config = dataclasses.replace(request.adapter, rank=choice.rank, targets=_exact_targets(choice.layers))
        attach_adapters(model, config, GLOBAL)
        if request.personal:
            attach_adapters(model, config.personal(), PERSONAL)
        return model.to("meta")  # adapters are initialised on the CPU

    def _trace(self, choice: _Choice, request: PlanRequest) -> tuple[StepTrace, nn.Module]:
        key = (choice.layers, choice.rank, choice.micro_batch, choice.checkpointing, request.adapter.variant, request.personal)
        if key not in self._traces:
            model = self._model(choice, request)
            self._traces[key] = (trace_step(model, self.example, choice.micro_batch, self.loss_fn, choice.checkpointing), model)
        return self._traces[key]

    def _plan(self, profile: DeviceProfile, request: PlanRequest, choice: _Choice, margin: float, changes: tuple[Change, ...] = ()) -> Plan:
        trace, model = self._trace(choice, request)
        batch_bytes = round(self._example_bytes * request.train.batch_size)
        breakdown = step_memory(self.base, model, trace, profile, choice.optimizer, batch_bytes)
        targets = request.adapter.targets if list(choice.layers) == self.targetable(request) else _exact_targets(choice.layers)
        micro = None if choice.micro_batch >= request.train.batch_size else choice.micro_batch
        shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad and is_adapter_key(name, GLOBAL)}
        return Plan(
            profile=profile,
            adapter_config=dataclasses.replace(request.adapter, rank=choice.rank, targets=targets),
            train_config=dataclasses.replace(request.train, micro_batch=micro, optimizer=choice.optimizer, checkpointing=choice.checkpointing),
            personal=request.personal,
            adapted_layers=choice.layers,
            adapter_shapes=shapes,
            breakdown=breakdown,
            changes=changes,
            margin=margin,
        )

    def _requested(self, request: PlanRequest) -> _Choice:
        if request.train.checkpointing and not self.can_checkpoint:
            raise FedloraError(f"checkpointing was asked for, but {type(self.base).__name__} has no repeated blocks to checkpoint")
        layers = tuple(self.targetable(request))
        return _Choice(layers, request.adapter.rank, request.train.optimizer, request.train.checkpointing,
                       request.train.micro_batch or request.train.batch_size)  # fmt: skip

    def estimate(self, profile: DeviceProfile | str, request: PlanRequest, margin: float = 0.0) -> Plan:
        """The requested configuration as it is, with its prediction (``plan.fits`` may be False)."""
        return self._plan(load_profile(profile), request, self._requested(request), _check_margin(margin))

    # -- the search

    def plan(self, profile: DeviceProfile | str, request: PlanRequest, margin: float = 0.0) -> Plan:
        """The best configuration that fits ``profile`` (the request itself when it fits),
        keeping ``margin`` (a fraction) of the usable RAM free.

        Raises :class:`PlanRefused` when nothing fits.
        """
        profile, margin = load_profile(profile), _check_margin(margin)
        wanted = self._requested(request)
        first = self._plan(profile, request, wanted, margin)
        if first.fits:
            return first
        if not first.flash_fits:
            raise PlanRefused(
                f"nothing fits {profile.name}: the frozen INT8 base needs {format_bytes(first.breakdown.frozen_bytes)} of flash and "
                f"{format_bytes(profile.usable_flash)} are left after the firmware ({format_bytes(profile.flash)} flash, "
                f"{format_bytes(profile.flash_reserve)} reserved); no adapter configuration changes that — use a smaller base "
                "(a lower --param-ratio) or a board with more flash",
                first,
            )

        # each lever's options, from the requested value down to its smallest
        free = set(request.levers)
        depths = range(len(wanted.layers), 0, -1) if "adapted layers" in free else [len(wanted.layers)]
        ranks = _halvings(wanted.rank) if "rank" in free else [wanted.rank]
        optimizers = OPTIMIZER_ORDER[OPTIMIZER_ORDER.index(wanted.optimizer) :] if "optimizer" in free else (wanted.optimizer,)
        checkpointing = (
            (wanted.checkpointing, True)
            if "activation checkpointing" in free and self.can_checkpoint and not wanted.checkpointing
            else (wanted.checkpointing,)
        )
        micro_batches = _halvings(wanted.micro_batch) if "micro-batch" in free else [wanted.micro_batch]

        def choice(depth: int, rank=ranks[-1], optimizer=optimizers[-1], micro_batch=micro_batches[-1], ckpt=False) -> _Choice:
            return _Choice(wanted.layers[-depth:], rank, optimizer, ckpt, micro_batch)

        def fits(depth: int, *levers, options=checkpointing, **named) -> bool:
            """Whether ``depth`` top layers fit with the given levers and the rest at their smallest."""
            return any(self._plan(profile, request, choice(depth, *levers, ckpt=c, **named), margin).fits for c in options)

        # memory only grows along each lever, so each is fixed in turn, most valued first;
        # depth by bisection (the largest number of top layers that fits at all)
        low, high = depths[-1] - 1, depths[0]
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        if low < depths[-1]:
            smallest = min((self._plan(profile, request, choice(depths[-1], ckpt=c), margin) for c in checkpointing), key=lambda plan: plan.breakdown.training_bytes)
            raise PlanRefused(self._refusal(profile, smallest, request), smallest)
        depth = low
        rank = next(r for r in ranks if fits(depth, r))
        optimizer = next(o for o in optimizers if fits(depth, rank, o))
        ckpt = next(c for c in checkpointing if fits(depth, rank, optimizer, options=(c,)))
        micro = next(m for m in micro_batches if fits(depth, rank, optimizer, m, options=(ckpt,)))
        chosen = choice(depth, rank, optimizer, micro, ckpt)
        return self._plan(profile, request, chosen, margin, self._changes(wanted, chosen, request))

    def _changes(self, wanted: _Choice, chosen: _Choice, request: PlanRequest) -> tuple[Change, ...]:
        changes = []
        if chosen.layers != wanted.layers:
            kept = ", ".join(chosen.layers) if len(chosen.layers) <= LAYERS_NAMED else f"{chosen.layers[0]} … {chosen.layers[-1]}"
            changes.append(Change("adapted layers", f"{len(wanted.layers)}", f"top {len(chosen.layers)} ({kept})"))
        if chosen.rank != wanted.rank:
            changes.append(Change("rank", str(wanted.rank), str(chosen.rank)))
        if chosen.optimizer != wanted.optimizer:
            changes.append(Change("optimizer", wanted.optimizer, f"{chosen.optimizer} (less optimizer state; its learning rate may need tuning)"))
        if chosen.checkpointing != wanted.checkpointing:
            changes.append(Change("activation checkpointing", "off", "on (blocks recompute their activations in backward)"))
        if chosen.micro_batch != wanted.micro_batch:
            passes = -(-request.train.batch_size // chosen.micro_batch)
            changes.append(Change("micro-batch", str(wanted.micro_batch), f"{chosen.micro_batch} (gradients accumulate over {passes} passes per step)"))
        return tuple(changes)

    def _refusal(self, profile: DeviceProfile, smallest: Plan, request: PlanRequest) -> str:
        b = smallest.breakdown
        name, size = b.largest()
        margin = f", less a {smallest.margin:.0%} margin: {format_bytes(smallest.budget_bytes)}" if smallest.margin else ""
        footprint = f" and the client process's {format_bytes(profile.process_footprint)}" if profile.process_footprint else ""
        if profile.usable_ram <= 0:
            return (
                f"nothing fits {profile.name}: the client process alone (Python, torch, flwr: {format_bytes(profile.process_footprint)}, "
                f"the profile's process_footprint) needs more than the {format_bytes(profile.node_budget)} left of "
                f"{format_bytes(profile.total_ram)} after a {format_bytes(profile.ram_reserve)} reserve, before any training; "
                "free memory on the board (a smaller GPU split, as rpi-zero-2w-headless has) and lower ram_reserve to match"
            )
        fixed = [lever for lever in LEVERS if lever not in request.levers]
        kept = f" (keeping {', '.join(fixed)} as asked)" if fixed else ""
        return (
            f"nothing fits {profile.name}: {format_bytes(profile.usable_ram)} of RAM are usable "
            f"({format_bytes(profile.total_ram)} minus a {format_bytes(profile.ram_reserve)} reserve{footprint}{margin}), and the smallest "
            f"configuration{kept} ({smallest.describe()}) needs {format_bytes(b.training_bytes)}. Its largest component is "
            f"{name.split(' (')[0]}, {format_bytes(size)}; {b.explain_peak()}"
        )
