"""The float32 operations between int8 linear layers.

Each mirrors the torch op of the model it replaces, computed in float32 (the device's
single precision), not bit-exact to torch: summation order differs, so results agree to
float32 rounding. Only the linear layers (:mod:`.linear`) are integer and bit-exact.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["embedding", "gelu_tanh", "layer_norm", "softmax", "causal_self_attention"]

_SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))


def embedding(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows of ``table`` (num, dim) picked by integer ``ids`` (…) → (…, dim)."""
    return table[ids]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """``(x − mean) / sqrt(var + eps) · weight + bias`` over the last axis; biased variance,
    as ``torch.nn.LayerNorm``."""
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps)) * weight + bias


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (``nn.GELU(approximate="tanh")``)."""
    return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(_SQRT_2_OVER_PI * (x + np.float32(0.044715) * x**3)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax with the max subtracted first; rows of ``-inf`` except one are fine."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def causal_self_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_heads: int) -> np.ndarray:
    """Multi-head attention where position t sees positions ≤ t.

    q, k, v: (B, T, C) float32, heads side by side along C. Returns (B, T, C).
    """
    B, T, C = q.shape
    hs = C // n_heads

    def heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(B, T, n_heads, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)

    scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.float32(math.sqrt(hs))  # (B, nh, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores[..., future] = -np.inf
    y = softmax(scores) @ heads(v)  # (B, nh, T, hs)
    return y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
