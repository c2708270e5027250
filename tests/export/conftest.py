"""Small finished runs to export from, built without a federation (no Ray): a base in a
temporary cache, a run folder with the final global adapter, and one client's kept
tensors — the files ``fedlora simulate`` leaves behind, with adapters that are not the
identity so that merging them matters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from fedlora.adapters import adapter_state
from fedlora.client_state import state_key
from fedlora.compress import CompressConfig, build_base
from fedlora.methods import get_method
from fedlora.participant import adapted_model, task_of
from fedlora.pretrain import PretrainConfig
from fedlora.rank import RankRule
from fedlora.run_layout import RunLayout, client_state_file
from fedlora.settings import FederationSettings


def make_run(root: Path, settings: FederationSettings, shared_bases, client: int = 0) -> Path:
    """Write a finished run of ``settings`` under ``root``, its base built in
    ``shared_bases`` (see tests/conftest.py); returns the run folder."""
    torch.set_num_threads(1)
    settings = settings.replace(out=str(root / "out"), cache_dir=str(shared_bases.cache_folder(root / "cache")))
    task = task_of(settings)
    with shared_bases.building(task.name):
        base = build_base(
            task, PretrainConfig(steps=settings.pretrain_steps),
            CompressConfig(rank=RankRule("budget", settings.param_ratio), heal_steps=settings.heal_steps),
            settings.seed, Path(settings.cache_dir),
        )
    model = adapted_model(settings, base.bundle, task)
    generator = torch.Generator().manual_seed(7)
    tensors = {}
    for key, value in adapter_state(model).items():
        if key.endswith("lora_B"):  # B starts at zero: give the adapters something to merge
            value = 0.1 * torch.randn(value.shape, generator=generator)
        tensors[key] = value.numpy()
    method = get_method(settings.method)
    run_dir = Path(settings.out) / settings.name
    run_dir.mkdir(parents=True)
    save_file({k: v for k, v in tensors.items() if method.travels(k)}, run_dir / "global.safetensors")
    summary = {
        "run": settings.name,
        "settings": settings.to_run_config(),
        "task": {"name": task.name, "config": task.config, "fingerprint": task.fingerprint},
        "base": {"id": base.bundle.id, "bytes": base.bundle.size_bytes, "metrics": base.metrics},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    kept = {k: v for k, v in tensors.items() if not method.travels(k)}
    kept["residual/ignored"] = np.ones(3, dtype=np.float32)  # error feedback: not a model tensor
    state = client_state_file(RunLayout(run_dir).client_state, state_key(settings, base.bundle.id), task.client(client).name)
    state.parent.mkdir(parents=True)
    save_file(kept, state)
    return run_dir


@pytest.fixture(scope="session")
def textlm_run(tmp_path_factory, shared_bases) -> Path:
    """The default task, briefly pretrained, fedit with a personal adapter."""
    settings = FederationSettings(task="textlm", clients=3, rank=4, personal=True, pretrain_steps=60, heal_steps=0)
    return make_run(tmp_path_factory.mktemp("textlm"), settings, shared_bases)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, shared_bases) -> Path:
    """An MLP task, fedsa (the client keeps B)."""
    settings = FederationSettings(task="digits", clients=4, method="fedsa", rank=4, pretrain_steps=150, heal_steps=0)
    return make_run(tmp_path_factory.mktemp("digits"), settings, shared_bases)
