"""Rebuild a client's personalized torch model from what a federation run left on disk.

A run's folder (:mod:`fedlora.run_layout`) holds its summary — the run's settings, task and
base id — and its final global state: the global adapter tensors that travel (for
flexlora, the aggregated update ``<layer>.delta`` = s·B·A of every trained layer instead).
Each client's kept tensors (a ``--personal`` adapter, fedsa's B, the local baseline's
adapters) are in the run's client-state folder. The base bundle is found in the cache by
its id. The personalized model is the base + the global
adapter as the client last received it + the client's kept tensors, exactly as the
client's final evaluation builds it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file
from torch import nn

from fedlora.adapters import GLOBAL, load_adapter_state
from fedlora.adapters.keys import A, B, adapter_key, layer_of, layer_of_delta
from fedlora.bundle import MANIFEST, BaseBundle, read_base_bundle
from fedlora.cache import cache_root
from fedlora.client_state import ClientState, state_key
from fedlora.errors import FedloraError
from fedlora.lowrank import truncated_factors
from fedlora.methods import get_method
from fedlora.participant import adapted_model, base_model, task_of
from fedlora.run_layout import SUMMARY, RunLayout
from fedlora.settings import FederationSettings
from fedlora.tasks.base import Partition, Task


@dataclass
class RunSource:
    """One finished run, opened: settings, task, base, and the chosen client (if any)."""

    layout: RunLayout
    summary: dict[str, Any]
    settings: FederationSettings
    task: Task
    bundle: BaseBundle
    client_index: int | None = None
    client_name: str | None = None
    #: what was loaded and what was missing, for the user
    notes: list[str] = field(default_factory=list)

    @property
    def client_data(self) -> Partition | None:
        return None if self.client_index is None else self.task.client(self.client_index)


def open_run(run_dir: str | Path, cache_dir: str | Path | None = None) -> RunSource:
    """Read a run's summary, rebuild its task, and find its base bundle in the cache."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    summary_path = layout.summary
    if not summary_path.is_file():
        raise FedloraError(f"{run_dir} has no {SUMMARY}: pass the folder of one finished run, e.g. runs/latest/fedit")
    try:
        summary = json.loads(summary_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FedloraError(f"{summary_path} is not valid JSON ({exc})") from exc
    if "settings" not in summary:
        runs = [p.parent.name for p in sorted(run_dir.glob(f"*/{SUMMARY}"))]
        hint = f"; its runs are: {', '.join(str(run_dir / r) for r in runs)}" if runs else ""
        raise FedloraError(f"{run_dir} is not the folder of one run (its {SUMMARY} has no settings){hint}")
    settings = FederationSettings.from_run_config(summary["settings"])
    if summary.get("base") is None:
        raise FedloraError(
            f"run {settings.name!r} is the {settings.method!r} baseline: it federates the dense model and has no "
            "factorized INT8 base to export; export an adapter run instead"
        )
    task = task_of(settings)
    recorded = summary.get("task", {}).get("fingerprint")
    if recorded and recorded != task.fingerprint:
        raise FedloraError(
            f"the data of task {task.name!r} has changed since run {settings.name!r} (fingerprint "
            f"{task.fingerprint[:12]} now, {recorded[:12]} then): a different Python standard library or corpus. "
            "Export on the machine and data the run used."
        )
    cache = cache_root(cache_dir or settings.cache_dir or None)
    bundle = find_base(summary["base"]["id"], cache)
    return RunSource(layout, summary, settings, task, bundle)


def find_base(base_id: str, cache: Path) -> BaseBundle:
    """The base bundle with id ``base_id`` in ``cache`` (``bases/*`` or ``received/<id>``)."""
    candidates = [cache / "received" / base_id, *sorted((cache / "bases").glob("*"))]
    for directory in candidates:
        manifest = directory / MANIFEST
        if manifest.is_file() and hashlib.sha256(manifest.read_bytes()).hexdigest() == base_id:
            return read_base_bundle(directory, expected_id=base_id)
    raise FedloraError(
        f"base bundle {base_id[:16]}… of this run is not in the cache {cache} (looked in bases/ and received/); "
        "pass the cache the run used with --cache-dir (or $FEDLORA_CACHE)"
    )


def choose_client(source: RunSource, client: str | None, partition: int | None) -> None:
    """Select the client by name (``stdlib:json``) or partition index."""
    task = source.task
    if client is not None and partition is not None:
        raise FedloraError("give --client or --partition, not both")
    if partition is not None:
        if not 0 <= partition < task.num_clients:
            raise FedloraError(f"--partition {partition} is outside 0..{task.num_clients - 1} (the run has {task.num_clients} clients)")
        source.client_index, source.client_name = partition, task.client(partition).name
        return
    if client is not None:
        names = [task.client(i).name for i in range(task.num_clients)]
        if client not in names:
            raise FedloraError(f"run {source.settings.name!r} has no client {client!r}; its clients are: {', '.join(names)}")
        source.client_index, source.client_name = names.index(client), client


def personalized_model(source: RunSource, base_only: bool = False, state_dir: str | Path | None = None) -> nn.Module:
    """The client's model (or the untouched base) in eval mode, adapters not yet merged.

    The adapted layers are the ones the run's tensors name (its global state and the
    client's kept tensors), so a run exports with the adapter layout it trained, whatever
    the task's default targets are now.
    """
    if base_only:
        source.notes.append("the untouched INT8 base, no adapters")
        return base_model(source.bundle, source.task).eval()
    settings = source.settings
    global_tensors = _global_tensors(source)
    kept = _kept_tensors(source, state_dir) if source.client_index is not None else {}
    layers = sorted({layer_of(key) for key in [*global_tensors, *kept]})
    targets = "^(" + "|".join(re.escape(layer) for layer in layers) + ")$" if layers else None
    model = adapted_model(settings, source.bundle, source.task, targets=targets)
    load_adapter_state(model, global_tensors)
    load_adapter_state(model, kept)
    if source.client_index is None and (settings.personal or get_method(settings.method).trains_alone):
        source.notes.append("no client chosen: the global adapter only, without any client's kept tensors")
    return model.eval()


def _global_tensors(source: RunSource) -> dict[str, torch.Tensor]:
    path = source.layout.global_state
    if not path.is_file():
        raise FedloraError(f"{path} is missing: the run did not finish (the server writes it after the last round)")
    tensors = load_file(path)
    settings = source.settings
    if get_method(settings.method).rule == "product":
        tensors = _received_factors(tensors, settings)
    source.notes.append(f"global adapter: {len(tensors)} tensors from {path}")
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in tensors.items()}


def _received_factors(products: dict[str, np.ndarray], settings: FederationSettings) -> dict[str, np.ndarray]:
    """What a client of a product-rule run (flexlora) receives: the rank-r truncated SVD of
    each ``<layer>.delta``, by the server's own rule."""
    factors = {}
    for key, product in products.items():
        try:
            layer = layer_of_delta(key)
        except ValueError as exc:
            raise FedloraError(f"{settings.method} global state has an unexpected tensor {key!r}") from exc
        b, a = truncated_factors(product, settings.rank, settings.alpha / settings.rank)
        factors[adapter_key(layer, GLOBAL, B)], factors[adapter_key(layer, GLOBAL, A)] = b, a
    return factors


def settings_method(source: RunSource) -> str:
    return f"method {source.settings.method}" + (" with --personal" if source.settings.personal else "")


def _kept_tensors(source: RunSource, state_dir: str | Path | None) -> dict[str, torch.Tensor]:
    directory = Path(state_dir) if state_dir is not None else source.layout.client_state
    state = ClientState.load(directory, state_key(source.settings, source.bundle.id), source.client_name)
    if not state.path.is_file():
        source.notes.append(
            f"client {source.client_name!r} kept no state ({state.path} does not exist: it never trained); "
            "its model is the global one"
        )
        return {}
    kept = len(state.personal)
    source.notes.append(f"client {source.client_name!r}: {kept} kept tensors from {state.path}" if kept else
                        f"client {source.client_name!r}: keeps no model tensors under {settings_method(source)}")
    return {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.personal.items()}
