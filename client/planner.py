"""Plan a client's local training to fit its device: predict the memory, pick what fits.

Memory of one local training step (DESIGN.md, "Memory model"), in bytes:

==================  ====================================================================
frozen base         INT8 factors + one float32 scale per row, other tensors as stored;
                    in flash on a microcontroller that reads weights in place, else in
                    RAM (the torch client on Linux holds it dequantized, as float32)
adapters            adapter tensors, float32 (trained ones and frozen ones alike)
gradients           one per trained value
optimizer state     sgd 0, momentum 1×, adam 2× the trained values (+ Adam's step counters)
input batch         the sampled batch (all micro-batches of a step are slices of it)
activations         what backward needs, from a dry run (:mod:`.memory_trace`): each
                    adapter's ``x`` and ``Ax``, and the path from the loss down to the
                    lowest adapter — nothing below it
scratch             temporaries alive at the step's peak on top of the activations (the
                    dry run, or the optimizer update if larger), plus on a microcontroller
                    one layer's factors dequantized to float32
runtime             the profile's reserve: RTOS/OS, radio stack, interpreter
==================  ====================================================================

The dry run is PyTorch's own autograd on the meta device, so what it predicts for the
torch trainer matches a measured step (``memory_probe``) closely; gradients are counted as
resident for the whole step, as firmware allocates them up front, while torch allocates
them in the first backward — with one pass per step the prediction exceeds torch's peak
by at most the gradients. Dequantization scratch, the INT8 base and the reserve are the
device-side terms no torch run can measure.

A plan fits when everything but the frozen base fits the usable RAM (the base too, where
it lives in RAM) and the base fits the usable flash. When the requested configuration does
not fit, :meth:`Planner.plan` searches for the best one that does. Best means, in order:
the most adapted layers (counted from the top: the path to the loss stays short), the
highest rank, the requested optimizer (else the one with less state), no activation
checkpointing (it costs a second forward pass), the largest micro-batch (gradient
accumulation keeps the effective batch). Memory only grows along each of these levers,
so the search fixes them one at a time and needs a few dozen dry runs at most. If even
the smallest configuration does not fit, it refuses with :class:`PlanRefused`, naming
the largest component and the budget.

The plan is a recipe the trainer follows: ``plan.adapter_config`` and ``plan.train_config``
are what ``attach_adapters`` and ``train`` take.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from fedlora.adapters import GLOBAL, PERSONAL, AdapterConfig, attach_adapters
from fedlora.adapters.model import is_adapter_key
from fedlora.client.memory_trace import StepTrace, example_bytes, execution_order, meta_base, trace_step
from fedlora.client.profiles import DeviceProfile, format_bytes, load_profile
from fedlora.errors import FedloraError
from fedlora.factorize import FactorizedLinear
from fedlora.tasks.datasets import Batch
from fedlora.train import LossFn, TrainConfig, checkpoint_units, task_loss

#: optimizers from the most state to the least; the search only ever moves right
OPTIMIZER_ORDER = ("adam", "momentum", "sgd")
#: what the search may change, most valued first (it gives up the last ones first)
LEVERS = ("adapted layers", "rank", "optimizer", "activation checkpointing", "micro-batch")


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

    @classmethod
    def from_settings(cls, settings, task, levers: tuple[str, ...] = LEVERS) -> PlanRequest:
        """What a federation's settings ask every client of ``task`` to train."""
        from fedlora.participant import adapter_config

        train = TrainConfig(steps=settings.local_steps, batch_size=settings.batch_size, lr=settings.lr, optimizer=settings.optimizer)
        return cls(adapter_config(settings, task), train, settings.personal, tuple(levers))


# -- the prediction ----------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryBreakdown:
    """Predicted memory of one local training step on one device (bytes)."""

    frozen_bytes: int
    frozen_in: str  # "flash" or "ram"
    adapter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    batch_bytes: int
    adapter_input_bytes: int  # activations saved by adapters: their x and Ax
    path_bytes: int  # other activations kept for backward: the path from the loss to the lowest adapter
    transient_bytes: int  # temporaries alive at the peak on top of the activations
    dequant_bytes: int  # one layer's INT8 factors dequantized to float32 (microcontrollers)
    runtime_bytes: int  # the profile's reserve
    peak_site: str  # where the step peaks, e.g. "forward of blocks.0.attn"
    peak_alive: tuple[tuple[str, int], ...] = ()  # what is alive there, by where it was made (largest first)

    @property
    def activation_bytes(self) -> int:
        return self.adapter_input_bytes + self.path_bytes

    @property
    def scratch_bytes(self) -> int:
        return self.transient_bytes + self.dequant_bytes

    @property
    def host_bytes(self) -> int:
        """What the torch trainer itself allocates for the step besides the frozen base —
        the part :func:`fedlora.client.memory_probe.measure_training` measures."""
        return (
            self.adapter_bytes + self.gradient_bytes + self.optimizer_bytes + self.batch_bytes
            + self.activation_bytes + self.transient_bytes
        )  # fmt: skip

    @property
    def training_bytes(self) -> int:
        """RAM the training step needs, the frozen base included where it lives in RAM."""
        return self.host_bytes + self.dequant_bytes + (self.frozen_bytes if self.frozen_in == "ram" else 0)

    @property
    def ram_bytes(self) -> int:
        return self.training_bytes + self.runtime_bytes

    @property
    def flash_bytes(self) -> int:
        return self.frozen_bytes if self.frozen_in == "flash" else 0

    def rows(self) -> list[tuple[str, int, str]]:
        """(component, bytes, where) for tables, in the order of the memory model."""
        return [
            ("frozen base (INT8 factors)" if self.frozen_in == "flash" else "frozen base", self.frozen_bytes, self.frozen_in),
            ("adapters", self.adapter_bytes, "ram"),
            ("gradients", self.gradient_bytes, "ram"),
            ("optimizer state", self.optimizer_bytes, "ram"),
            ("input batch", self.batch_bytes, "ram"),
            ("activations: adapter inputs (x, Ax)", self.adapter_input_bytes, "ram"),
            ("activations: path from the loss", self.path_bytes, "ram"),
            (f"scratch: temporaries at the peak ({self.peak_site})", self.transient_bytes, "ram"),
            ("scratch: dequantized layer", self.dequant_bytes, "ram"),
            ("runtime reserve", self.runtime_bytes, "ram"),
        ]

    @property
    def step_peak_bytes(self) -> int:
        """Activations and temporaries alive at the step's peak (their sum in the table)."""
        return self.activation_bytes + self.transient_bytes

    def explain_peak(self) -> str:
        alive = ", ".join(f"{format_bytes(size)} made in {site}" for site, size in self.peak_alive)
        return f"activations and temporaries peak at {format_bytes(self.step_peak_bytes)} during {self.peak_site}" + (
            f" ({alive})" if alive else ""
        )

    def largest(self) -> tuple[str, int]:
        """The largest RAM component of the training step (the reserve is not one)."""
        ram = [(name, size) for name, size, where in self.rows() if where == "ram" and name != "runtime reserve"]
        if self.frozen_in == "ram":
            ram.append(("frozen base", self.frozen_bytes))
        return max(ram, key=lambda item: item[1])


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
        where = f"{len(layers)} layer{'s' if len(layers) != 1 else ''}" + (f" ({', '.join(layers)})" if len(layers) <= 3 else "")
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
        it adds about 1 KB (:func:`update_message_bytes`)."""
        from fedlora.wire import check_format, frame_bytes

        picked = {name: shape for name, shape in self.adapter_shapes.items() if travels is None or travels(name)}
        if check_format(wire) == "int8":
            return frame_bytes(picked)
        width = {"fp32": 4, "fp16": 2}[wire]
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

    def _frozen_bytes(self, profile: DeviceProfile) -> int:
        if profile.kind == "linux":  # the torch client holds the base dequantized, buffers and all
            return sum(t.numel() * t.element_size() for t in [*self.base.parameters(), *self.base.buffers()])
        # what the bundle stores: INT8 factors with a float32 scale per row (U: m rows, V: k
        # rows), every other tensor of the state dict as it is
        layers = self._factorized()
        factors = {id(layer.u) for layer in layers} | {id(layer.v) for layer in layers}
        int8 = sum(layer.u.numel() + layer.v.numel() + 4 * (layer.out_features + layer.rank) for layer in layers)
        return int8 + sum(t.numel() * t.element_size() for t in self.base.state_dict(keep_vars=True).values() if id(t) not in factors)

    def _factorized(self) -> list[FactorizedLinear]:
        return [m for m in self.base.modules() if isinstance(m, FactorizedLinear)]

    def _dequant_bytes(self, profile: DeviceProfile) -> int:
        if profile.kind == "linux":
            return 0
        return max((4 * layer.rank * (layer.in_features + layer.out_features) for layer in self._factorized()), default=0)

    def _plan(self, profile: DeviceProfile, request: PlanRequest, choice: _Choice, margin: float, changes: tuple[Change, ...] = ()) -> Plan:
        trace, model = self._trace(choice, request)
        trained = [p for p in model.parameters() if p.requires_grad]
        adapter_tensors = [t for name, t in [*model.named_parameters(), *model.named_buffers()] if is_adapter_key(name)]
        gradient_bytes = sum(p.numel() * p.element_size() for p in trained)
        # momentum: one buffer per tensor; Adam: two, and a float32 step counter per tensor
        optimizer_bytes = {"sgd": 0, "momentum": gradient_bytes, "adam": 2 * gradient_bytes + 4 * len(trained)}[choice.optimizer]
        # after backward, torch's (single-tensor) Adam update keeps the previous tensor's
        # denominator while making two temporaries (sqrt, then the division) of the next one
        update_scratch = 3 * max(p.numel() * p.element_size() for p in trained) if choice.optimizer == "adam" else 0
        update_peaks = update_scratch > trace.peak_bytes
        held = trace.held_bytes
        breakdown = MemoryBreakdown(
            frozen_bytes=self._frozen_bytes(profile),
            frozen_in="flash" if profile.weights_in_flash else "ram",
            adapter_bytes=sum(t.numel() * t.element_size() for t in adapter_tensors),
            gradient_bytes=gradient_bytes,
            optimizer_bytes=optimizer_bytes,
            batch_bytes=round(self._example_bytes * request.train.batch_size),
            adapter_input_bytes=trace.adapter_input_bytes,
            path_bytes=held - trace.adapter_input_bytes,
            transient_bytes=max(max(trace.peak_bytes, update_scratch) - held, 0),
            dequant_bytes=self._dequant_bytes(profile),
            runtime_bytes=profile.ram_reserve,
            peak_site="the optimizer update" if update_peaks else trace.peak_site,
            peak_alive=() if update_peaks else tuple(sorted(trace.peak_by_site.items(), key=lambda item: -item[1])[:3]),
        )
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
            kept = ", ".join(chosen.layers) if len(chosen.layers) <= 3 else f"{chosen.layers[0]} … {chosen.layers[-1]}"
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
        fixed = [lever for lever in LEVERS if lever not in request.levers]
        kept = f" (keeping {', '.join(fixed)} as asked)" if fixed else ""
        return (
            f"nothing fits {profile.name}: {format_bytes(profile.usable_ram)} of RAM are usable "
            f"({format_bytes(profile.total_ram)} minus a {format_bytes(profile.ram_reserve)} reserve{margin}), and the smallest "
            f"configuration{kept} ({smallest.describe()}) needs {format_bytes(b.training_bytes)}. Its largest component is "
            f"{name.split(' (')[0]}, {format_bytes(size)}; {b.explain_peak()}"
        )


# -- entry points for a federation -------------------------------------------------------


def base_ranks(task, param_ratio: float = 0.5, bundle=None) -> dict[str, int]:
    """Ranks of the factorized layers: from a base bundle, or from the parameter-budget rule
    a federation builds its base with (which depends on layer shapes only)."""
    if bundle is not None:
        return dict(bundle.ranks)
    from fedlora.factorize import target_linears
    from fedlora.rank import RankRule

    rule = RankRule("budget", param_ratio)
    with torch.device("meta"):
        model = task.build_model()
    return {name: rule.choose(None, *linear.weight.shape) for name, linear in target_linears(model, task.default_targets)}


def task_planner(task, ranks: dict[str, int], loss_fn: LossFn = task_loss) -> Planner:
    """A planner for ``task``'s model factorized with ``ranks`` (built on meta: no weights)."""
    from fedlora.factorize import factorize_like
    from fedlora.tasks.base import manual_seed_generator

    with torch.device("meta"):
        model = task.build_model()
        factorize_like(model, ranks)
    example = task.client(0).train.sample(2, manual_seed_generator(0))
    return Planner(model, example, loss_fn)


@lru_cache(maxsize=8)
def _cached_planner(task, ranks: tuple[tuple[str, int], ...]) -> Planner:
    return task_planner(task, dict(ranks))


def plan_for(
    profile: DeviceProfile | str, settings, bundle=None, request: PlanRequest | None = None, search: bool = True, margin: float = 0.0
) -> Plan:
    """The plan one client of a federation trains on ``profile``.

    ``settings`` (FederationSettings) give the task and what to train; ``bundle`` (the
    run's base) gives the exact layer ranks (without it, the settings' ``param_ratio``
    does). Planners are cached, so calling this per client is cheap. Raises
    :class:`PlanRefused` (a ``FedloraError``) when nothing fits; with ``search=False`` it
    returns the request's own plan, fitting or not.
    """
    from fedlora.methods import get_method
    from fedlora.participant import task_of

    if get_method(settings.method).variant is None:
        raise FedloraError(f"method {settings.method!r} trains the dense model; the planner plans adapter training")
    task = task_of(settings)  # cached per process, so the same settings give the same task object
    planner = _cached_planner(task, tuple(sorted(base_ranks(task, settings.param_ratio, bundle).items())))
    request = request or PlanRequest.from_settings(settings, task)
    return planner.plan(profile, request, margin) if search else planner.estimate(profile, request, margin)


def update_message_bytes(plan: Plan, travels=None, wire: str = "int8") -> int:
    """Bytes of the Flower reply that carries one update of ``plan``: the update's arrays as
    ``client/local_round.py`` sends them (``update`` in the wire format, ``metrics`` with
    four values), serialized as Flower sends them (about 1 KB of framing on the payload)."""
    import time

    import numpy as np
    from flwr.app import Message, Metadata, MetricRecord, RecordDict

    from fedlora.records import message_bytes, to_record
    from fedlora.wire import encode

    rng = np.random.default_rng(0)  # sizes do not depend on the values
    tensors = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in plan.adapter_shapes.items() if travels is None or travels(name)}
    metadata = Metadata(
        run_id=1, message_id="0" * 64, src_node_id=2**63 - 1, dst_node_id=1, reply_to_message_id="0" * 64,
        group_id="1", created_at=time.time(), ttl=3600.0, message_type="train",
    )  # fmt: skip
    metrics = MetricRecord({"num-examples": 1, "loss": 0.0, "global": 0.0, "personal": 0.0})
    return message_bytes(Message(metadata=metadata, content=RecordDict({"update": to_record(encode(tensors, wire)), "metrics": metrics})))


def planned_model(base: nn.Module, plan: Plan) -> nn.Module:
    """``base`` (a frozen factorized model without adapters) with the plan's adapters attached."""
    attach_adapters(base, plan.adapter_config, GLOBAL)
    if plan.personal:
        attach_adapters(base, plan.adapter_config.personal(), PERSONAL)
    return base
