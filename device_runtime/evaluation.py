"""Running a model over a data set and scoring it, in numpy.

The metrics are the core library's (``fedlora.metrics``): top-1 ``accuracy``, mean
cross-entropy ``loss`` in nats per target, and ``perplexity = exp(loss)`` (capped at
exp(50)); logits have the classes on their last axis, targets the leading shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["agreement", "metrics", "predict_logits"]


def predict_logits(model: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``model`` over ``inputs`` in batches of ``batch_size`` rows; logits concatenated."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [model(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``accuracy``, ``loss`` and ``perplexity`` of ``logits`` (..., C) against ``targets`` (...)."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    labels = np.asarray(targets).reshape(-1)
    if flat.shape[0] != labels.shape[0]:
        raise ValueError(f"{flat.shape[0]} predictions but {labels.shape[0]} targets")
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    loss = float(np.mean(log_norm - shifted[np.arange(len(labels)), labels])) if len(labels) else 0.0
    accuracy = float(np.mean(flat.argmax(axis=1) == labels)) if len(labels) else 0.0
    return {"accuracy": accuracy, "loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def agreement(predictions: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of positions where two top-1 predictions are equal."""
    predictions, reference = np.asarray(predictions), np.asarray(reference)
    if predictions.shape != reference.shape:
        raise ValueError(f"predictions {predictions.shape} and reference {reference.shape} differ in shape")
    return float(np.mean(predictions == reference)) if predictions.size else 1.0
