"""Wire codecs: exactness of fp32, error bounds of fp16 and int8, error feedback."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedlora.errors import FedloraError
from fedlora.wire import FRAME, ErrorFeedback, FrameError, check_format, decode, encode, frame_bytes

shapes = st.sampled_from([(4, 64), (64, 4), (3, 3), (7,), (1, 1), (2, 3, 4)])


def tensors_of(shape, seed):
    return np.random.default_rng(seed).normal(scale=0.1, size=shape).astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_int8_round_trip_error_is_within_half_a_step_of_its_slice(shape, seed):
    value = tensors_of(shape, seed)
    payload = encode({"t": value}, "int8")
    assert set(payload) == {FRAME} and payload[FRAME].dtype == np.uint8
    decoded = decode(payload, "int8", {"t": shape})["t"]
    rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
    matrix, back = value.reshape(rows, cols), decoded.reshape(rows, cols)
    axis = 0 if rows > cols else 1  # one scale per slice along the shorter side
    step = np.abs(matrix).max(axis=axis, keepdims=True) / 127
    assert np.all(np.abs(back - matrix) <= step / 2 * (1 + 1e-5) + 1e-12)


def test_int8_scales_cost_one_float_per_rank_component():
    # A (4×64) and B (64×4): 4 scales each, not 64
    assert frame_bytes({"a": (4, 64), "b": (64, 4)}) == 8 + 2 * (4 * 4 + 256)


@given(values=arrays(np.float32, (3, 5), elements=st.floats(-1e4, 1e4, width=32)))
def test_fp32_is_exact_and_fp16_is_close(values):
    assert np.array_equal(decode(encode({"t": values}, "fp32"), "fp32", {"t": (3, 5)})["t"], values)
    half = decode(encode({"t": values}, "fp16"), "fp16", {"t": (3, 5)})["t"]
    np.testing.assert_allclose(half, values, rtol=1e-3, atol=1e-3)


def test_error_feedback_carries_the_residual_into_the_next_update():
    rng = np.random.default_rng(0)
    update = {"t": rng.normal(size=(4, 16)).astype(np.float32)}
    feedback = ErrorFeedback()
    sent = decode(feedback.encode(update, "int8"), "int8", {"t": (4, 16)})["t"]
    np.testing.assert_allclose(feedback.residual["t"], update["t"] - sent, atol=1e-7)
    # next round: the residual is added before quantizing
    second = {"t": np.zeros((4, 16), np.float32)}
    residual = feedback.residual["t"].copy()
    sent_again = decode(feedback.encode(second, "int8"), "int8", {"t": (4, 16)})["t"]
    np.testing.assert_allclose(sent_again + feedback.residual["t"], residual, atol=1e-7)
    # over many rounds nothing is lost for good: Σ sent = Σ updates + e_start − e_end
    start = feedback.residual["t"].astype(np.float64)
    total_sent, total_true = np.zeros((4, 16)), np.zeros((4, 16))
    for _ in range(50):
        u = {"t": rng.normal(size=(4, 16)).astype(np.float32) * 0.01}
        total_true += u["t"]
        total_sent += decode(feedback.encode(u, "int8"), "int8", {"t": (4, 16)})["t"]
    np.testing.assert_allclose(total_sent, total_true + start - feedback.residual["t"], atol=1e-5)


def test_frames_that_do_not_fit_are_refused():
    payload = encode({"a": np.ones((2, 3), np.float32)}, "int8")
    with pytest.raises(FrameError, match="disagree on tensor names or shapes"):
        decode(payload, "int8", {"b": (2, 3)})
    with pytest.raises(FrameError, match="expected uint8"):
        decode({FRAME: payload[FRAME][:-1]}, "int8", {"a": (2, 3)})
    broken = payload[FRAME].copy()
    broken[8:12] = np.frombuffer(np.float32(-1).tobytes(), np.uint8)  # a negative scale
    with pytest.raises(FrameError, match="invalid scales"):
        decode({FRAME: broken}, "int8", {"a": (2, 3)})
    with pytest.raises(FrameError, match="non-finite"):
        decode({"a": np.full((2, 3), np.nan, np.float32)}, "fp32", {"a": (2, 3)})
    with pytest.raises(FedloraError, match="unknown wire format 'int4'"):
        check_format("int4")
