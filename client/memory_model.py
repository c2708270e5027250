"""The memory model: what one local training step on one device holds, in bytes.

Memory of one local training step (DESIGN.md, "Memory model"):

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
runtime             the profile's reserve (RTOS/OS, radio stack) and the client process's
                    footprint (interpreter, torch, flwr: measured by bench_node)
==================  ====================================================================

The dry run is PyTorch's own autograd on the meta device, so what it predicts for the
torch trainer matches a measured step (``memory_probe``) closely; gradients are counted as
resident for the whole step, as firmware allocates them up front, while torch allocates
them in the first backward — with one pass per step the prediction exceeds torch's peak
by at most the gradients. Dequantization scratch, the INT8 base and the reserve are the
device-side terms no torch run can measure.

:func:`step_memory` turns one dry run into a :class:`MemoryBreakdown`; which
configuration to dry-run is the search's business (:mod:`.plan_search`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedlora.adapters.keys import is_adapter_key
from fedlora.client.memory_trace import StepTrace
from fedlora.client.profiles import DeviceProfile, format_bytes
from fedlora.factorize import FactorizedLinear

#: bytes of a float32: the INT8 base's per-row scales, a dequantized layer, Adam's step counters
FLOAT32_BYTES = 4
#: after backward, torch's (single-tensor) Adam update keeps the previous tensor's
#: denominator while making two temporaries (sqrt, then the division) of the next one
ADAM_UPDATE_TEMPORARIES = 3
#: what is alive at the peak is reported by where it was made, the largest this many: enough
#: to point at the culprit, short enough for one line of ``explain_peak``
PEAK_SITES_SHOWN = 3


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
    runtime_bytes: int  # the profile's reserve and the client process's footprint
    peak_site: str  # where the step peaks, e.g. "forward of blocks.0.attn"
    peak_alive: tuple[tuple[str, int], ...] = ()  # what is alive there, by where it was made (largest first)

    @property
    def activation_bytes(self) -> int:
        return self.adapter_input_bytes + self.path_bytes

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


# -- the terms that depend on the frozen base alone ----------------------------------------


def _factorized(base: nn.Module) -> list[FactorizedLinear]:
    return [m for m in base.modules() if isinstance(m, FactorizedLinear)]


def frozen_base_bytes(base: nn.Module, profile: DeviceProfile) -> int:
    """The frozen base (on meta, without adapters) as ``profile`` holds it."""
    if profile.kind == "linux":  # the torch client holds the base dequantized, buffers and all
        return sum(t.numel() * t.element_size() for t in [*base.parameters(), *base.buffers()])
    # what the bundle stores: INT8 factors with a float32 scale per row (U: m rows, V: k
    # rows), every other tensor of the state dict as it is
    layers = _factorized(base)
    factors = {id(layer.u) for layer in layers} | {id(layer.v) for layer in layers}
    int8 = sum(layer.u.numel() + layer.v.numel() + FLOAT32_BYTES * (layer.out_features + layer.rank) for layer in layers)
    return int8 + sum(t.numel() * t.element_size() for t in base.state_dict(keep_vars=True).values() if id(t) not in factors)


def dequant_bytes(base: nn.Module, profile: DeviceProfile) -> int:
    """Scratch for one layer's INT8 factors dequantized to float32 (the largest layer's);
    the torch client holds the whole base dequantized already."""
    if profile.kind == "linux":
        return 0
    return max((FLOAT32_BYTES * layer.rank * (layer.in_features + layer.out_features) for layer in _factorized(base)), default=0)


# -- one step ------------------------------------------------------------------------------


def step_memory(base: nn.Module, model: nn.Module, trace: StepTrace, profile: DeviceProfile, optimizer: str, batch_bytes: int) -> MemoryBreakdown:
    """The breakdown of one step of ``model`` (``base`` with a configuration's adapters, on
    meta) on ``profile``: ``trace`` is its dry run, ``optimizer`` the optimizer that steps,
    ``batch_bytes`` the sampled input batch."""
    trained = [p for p in model.parameters() if p.requires_grad]
    adapter_tensors = [t for name, t in [*model.named_parameters(), *model.named_buffers()] if is_adapter_key(name)]
    gradient_bytes = sum(p.numel() * p.element_size() for p in trained)
    # momentum: one buffer per tensor; Adam: two, and a float32 step counter per tensor
    optimizer_bytes = {"sgd": 0, "momentum": gradient_bytes, "adam": 2 * gradient_bytes + FLOAT32_BYTES * len(trained)}[optimizer]
    update_scratch = ADAM_UPDATE_TEMPORARIES * max(p.numel() * p.element_size() for p in trained) if optimizer == "adam" else 0
    update_peaks = update_scratch > trace.peak_bytes
    held = trace.held_bytes
    return MemoryBreakdown(
        frozen_bytes=frozen_base_bytes(base, profile),
        frozen_in="flash" if profile.weights_in_flash else "ram",
        adapter_bytes=sum(t.numel() * t.element_size() for t in adapter_tensors),
        gradient_bytes=gradient_bytes,
        optimizer_bytes=optimizer_bytes,
        batch_bytes=batch_bytes,
        adapter_input_bytes=trace.adapter_input_bytes,
        path_bytes=held - trace.adapter_input_bytes,
        transient_bytes=max(max(trace.peak_bytes, update_scratch) - held, 0),
        dequant_bytes=dequant_bytes(base, profile),
        runtime_bytes=profile.ram_reserve + profile.process_footprint,
        peak_site="the optimizer update" if update_peaks else trace.peak_site,
        peak_alive=() if update_peaks else tuple(sorted(trace.peak_by_site.items(), key=lambda item: -item[1])[:PEAK_SITES_SHOWN]),
    )
