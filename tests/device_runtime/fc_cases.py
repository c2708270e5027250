"""Named int8 FC test cases shared by the oracle tests (C reference, TFLM interpreter).

Each case is a list of :class:`FullyConnectedSpec` forming a chain plus an int8 input
batch. Edge cases exercise one numeric corner each; random cases cover the rest.
"""

from __future__ import annotations

import numpy as np

from fedlora.device_runtime import FullyConnectedSpec

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)


def _single(weights, weight_scale, bias=None, *, input_scale=1.0, input_zero_point=0,
            output_scale=1.0, output_zero_point=0, activation="none"):
    return [FullyConnectedSpec(
        np.asarray(weights, dtype=np.int8), np.atleast_1d(np.asarray(weight_scale, np.float32)),
        input_scale, input_zero_point, output_scale, output_zero_point,
        None if bias is None else np.asarray(bias, dtype=np.int64).astype(np.int32), activation,
    )]


def edge_cases() -> dict[str, tuple[list[FullyConnectedSpec], np.ndarray]]:
    """Corner cases, each run on an input that reaches the corner."""
    rng = np.random.default_rng(1234)
    cases = {
        # Scale 0.25 exactly: every int8 input, ties everywhere (1 → 1, 5 → 2 double).
        "quarter_ties": (_single([[1]], 0.25), ALL_INT8),
        "quarter_ties_negative_weight": (_single([[-1]], 0.25, output_zero_point=3), ALL_INT8),
        # Accumulator wraps past INT32_MAX / INT32_MIN through the bias.
        "bias_wrap": (
            _single(np.full((4, 8), 127), 2.0**-24, [INT32_MAX, INT32_MAX - 2000, INT32_MIN,
                                                     INT32_MIN + 5]),
            np.array([[1] * 8, [127] * 8, [-128] * 8, [0] * 8], dtype=np.int8),
        ),
        # Effective scale below 2⁻³²: multiplier flushed to 0, output = zero point.
        "flush_to_zero": (_single(np.full((3, 5), 100), 2.0**-40, [INT32_MAX, 0, -5],
                                  output_zero_point=-9), rng.integers(-128, 128, (6, 5), np.int8)),
        # Effective scale 4: the int32 left shift by 3 wraps for large accumulators.
        "left_shift_wrap": (
            _single(np.full((2, 64), 127), 3.0, [2**30, -(2**30)], input_zero_point=-128,
                    output_zero_point=5),
            np.array([[127] * 64, [-128] * 64, [0] * 64], dtype=np.int8),
        ),
        # int8 weights may hold −128 (symmetric quantization never produces it).
        "weights_min": (_single(np.full((2, 16), -128), [0.01, 0.02], input_zero_point=-128,
                                input_scale=0.5, output_scale=0.7),
                        np.array([[127] * 16, [-128] * 16], dtype=np.int8)),
        "relu6_tie": (_single([[1], [2]], [0.5, 0.25], output_scale=12.0, output_zero_point=-5,
                              activation="relu6"), ALL_INT8),
        "relu": (_single(rng.integers(-127, 128, (9, 7)), 0.01, output_zero_point=-20,
                         input_zero_point=11, output_scale=0.05, activation="relu"),
                 rng.integers(-128, 128, (5, 7), np.int8)),
        # Depth above 1024: the runtime sums float32 blocks; TFLM and C just loop.
        "deep_per_channel": (
            _single(rng.integers(-127, 128, (7, 2500)), rng.uniform(1e-4, 1e-3, 7),
                    rng.integers(-(10**6), 10**6, 7), input_zero_point=-3,
                    input_scale=0.02, output_scale=0.4, output_zero_point=2),
            rng.integers(-128, 128, (3, 2500), np.int8),
        ),
        # Partial sums past 2²⁴ with odd values (16129 per term), cancelled by the bias at
        # unit scale so an accumulator off by one shows in the output.
        "deep_cancelling": (
            _single(np.stack([np.full(1099, 127), np.full(1099, -127)]), 1.0,
                    [-16129 * 1099 + 5, -16129 * 1099 - 7]),
            np.stack([np.full(1099, 127), np.full(1099, -127)]).astype(np.int8),
        ),
    }
    cases["chain3"] = random_chain(rng, [33, 8, 21, 5], batch=4, activations="random")
    return cases


def random_spec(rng, depth, out, *, input_scale, input_zero_point, output_scale,
                output_zero_point, per_channel, with_bias, activation) -> FullyConnectedSpec:
    weights = rng.integers(-127, 128, size=(out, depth), dtype=np.int8)
    # Weight scales so that the accumulator spans a few hundred output steps at most.
    typical = output_scale / (input_scale * 127 * np.sqrt(depth)) * 40
    n_scales = out if per_channel else 1
    weight_scale = (typical * rng.uniform(0.3, 3.0, n_scales)).astype(np.float32)
    bias = None
    if with_bias:
        bias_scale = np.float32(input_scale) * weight_scale
        bias = np.round(rng.normal(0, 1, out) * output_scale / bias_scale).astype(np.int32)
    return FullyConnectedSpec(weights, weight_scale, input_scale, input_zero_point,
                              output_scale, output_zero_point, bias, activation)


def random_chain(rng, widths, *, batch, activations="none"):
    """A chain through ``widths`` (input, hidden…, output) with random quantization."""
    scales = [float(np.float32(s)) for s in rng.uniform(0.005, 0.5, len(widths))]
    zero_points = [int(z) for z in rng.integers(-128, 128, len(widths))]
    specs = []
    for i, (depth, out) in enumerate(zip(widths, widths[1:])):
        activation = (str(rng.choice(["none", "relu", "relu6"]))
                      if activations == "random" else activations)
        specs.append(random_spec(
            rng, depth, out, input_scale=scales[i], input_zero_point=zero_points[i],
            output_scale=scales[i + 1], output_zero_point=zero_points[i + 1],
            per_channel=bool(rng.integers(2)), with_bias=bool(rng.integers(4)),
            activation=activation,
        ))
    x = rng.integers(-128, 128, size=(batch, widths[0]), dtype=np.int8)
    return specs, x


def random_cases(seed: int, count: int):
    """``count`` random chains of 1–3 layers, widths 1–70, batch 1–6."""
    rng = np.random.default_rng(seed)
    cases = {}
    for i in range(count):
        widths = [int(w) for w in rng.integers(1, 71, size=int(rng.integers(2, 5)))]
        cases[f"random_{seed}_{i}"] = random_chain(
            rng, widths, batch=int(rng.integers(1, 7)), activations="random")
    return cases
