"""Benchmark the int8 device runtime on factorized layers.

For a dense ``m×n`` layer factorized to rank ``r = p·m·n/(m+n)`` (``p`` = fraction of the
parameters kept), run ``y = U(Vx)`` as two int8 FCs and compare throughput with the dense
float32 ``x·Wᵀ`` of the original layer and with the TFLM interpreter on the same model as
a ``.tflite``. Also reports the bytes the device stores (int8 weights, int32 biases,
per-channel multipliers/shifts and per-layer scalars), the peak int8 activation RAM, and
the number of outputs that differ from TFLM (must be 0).

Run: ``fedlora bench runtime`` or ``python -m fedlora.simulations.bench_runtime``
(``--help`` for options). Timings are medians over interleaved calls; numpy's BLAS threads
are shared by both numpy paths.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fedlora.device_runtime import FactorizedLinear, quantize_activation
from fedlora.export.tflite import build_tflite_model

SIZES = (256, 1024)
FRACTIONS = (0.5, 0.25)
BATCHES = (1, 64)


@dataclass
class Row:
    size: int
    fraction: float
    rank: int
    batch: int
    int8_per_s: float  # samples per second
    dense_per_s: float
    tflm_per_s: float | None  # None when tflite-micro is not installed
    flash_bytes: int
    activation_bytes: int
    mismatches: int | None


def rank_for(m: int, n: int, fraction: float) -> int:
    """Rank whose factors hold ``fraction`` of the dense parameters: r·(m + n) = p·m·n."""
    return max(1, round(fraction * m * n / (m + n)))


def factorize(weights: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD split as in fedlora: ``U = U_r·√S_r`` (m, r), ``V = √S_r·V_rᵀ`` (r, n)."""
    u, s, vt = np.linalg.svd(weights.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def median_seconds(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median time per call, interleaving the calls so that machine noise hits all alike."""
    for call in calls.values():  # warm up caches and BLAS threads
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def tflm_runner(model: bytes) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    interpreter = runtime.Interpreter.from_bytes(model)

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        return interpreter.get_output(0)

    return run


def bench_layer(size: int, fraction: float, rounds: int, rng: np.random.Generator) -> list[Row]:
    m = n = size
    rank = rank_for(m, n, fraction)
    weights = (rng.normal(size=(m, n)) / np.sqrt(n)).astype(np.float32)
    bias = (0.1 * rng.normal(size=m)).astype(np.float32)
    u, v = factorize(weights, rank)
    layer = FactorizedLinear.from_float(u, v, bias, rng.normal(size=(512, n)))
    weights_t = np.ascontiguousarray(weights.T)  # the dense baseline's best layout
    rows = []
    for batch in BATCHES:
        x = rng.normal(size=(batch, n)).astype(np.float32)
        x_q = quantize_activation(x, layer.first.input_scale, layer.first.input_zero_point)
        times = median_seconds(
            {"int8": lambda: layer(x_q), "dense": lambda: x @ weights_t + bias}, rounds)
        tflm = tflm_runner(build_tflite_model(layer.chain, batch=batch))
        tflm_per_s = mismatches = None
        if tflm is not None:
            mismatches = int((tflm(x_q) != layer(x_q)).sum())
            tflm_rounds = max(3, rounds // (20 if batch * size >= 2**15 else 5))
            tflm_per_s = batch / median_seconds({"tflm": lambda: tflm(x_q)}, tflm_rounds)["tflm"]
        rows.append(Row(
            size=size, fraction=fraction, rank=rank, batch=batch,
            int8_per_s=batch / times["int8"], dense_per_s=batch / times["dense"],
            tflm_per_s=tflm_per_s, flash_bytes=layer.chain.flash_bytes()["total"],
            activation_bytes=layer.chain.peak_activation_bytes(batch), mismatches=mismatches,
        ))
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("layer", "params", "rank", "batch", "int8 samples/s", "fp32 dense samples/s",
              "TFLM samples/s", "int8/fp32", "flash B", "act RAM B", "mismatches")
    lines = []
    for r in rows:
        lines.append((
            f"{r.size}x{r.size}", f"{r.fraction:.0%}", str(r.rank), str(r.batch),
            f"{r.int8_per_s:,.0f}", f"{r.dense_per_s:,.0f}",
            "n/a" if r.tflm_per_s is None else f"{r.tflm_per_s:,.0f}",
            f"{r.int8_per_s / r.dense_per_s:.2f}x", f"{r.flash_bytes:,}",
            f"{r.activation_bytes:,}", "n/a" if r.mismatches is None else str(r.mismatches),
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [" | ".join(h.rjust(w) for h, w in zip(header, widths)),
           "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


NOTES = (
    "flash B: int8 weights + int32 biases + per-channel int32 multipliers and shifts "
    "+ per-layer scalars (dense float32 would be 4·m·n + 4·m).",
    "act RAM B: peak int8 activations live at once (layer input + output), per batch.",
    "mismatches: outputs differing from the TFLM interpreter on the same .tflite.",
)


def run(rounds: int = 200, seed: int = 0, out: Path | None = None) -> list[Row]:
    """Every configuration (sizes × parameter fractions × batches); rows also go to ``out``
    as JSON when given."""
    rng = np.random.default_rng(seed)
    rows = [row for size in SIZES for fraction in FRACTIONS for row in bench_layer(size, fraction, rounds, rng)]
    if out is not None:
        Path(out).write_text(json.dumps({"rounds": rounds, "seed": seed, "rows": [asdict(r) for r in rows]}, indent=2))
    return rows


def report(rows: list[Row]) -> str:
    """The table and what its columns mean."""
    return format_table(rows) + "\n\n" + "\n".join(NOTES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200,
                        help="timed calls per method and configuration (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    print(report(run(args.rounds, args.seed, args.out)))


if __name__ == "__main__":
    main()
