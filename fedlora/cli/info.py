"""``fedlora info``: versions, what is cached, and the fingerprint of a task's data."""

from __future__ import annotations

import importlib.metadata
import json
import platform

from rich.table import Table

from fedlora import __version__
from fedlora.cache import cache_root
from fedlora.cli import options
from fedlora.terminal import console


def _version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def info(
    task: options.TaskName = "textlm",
    corpus: options.Corpus = None,
    seed: options.Seed = 0,
    cache_dir: options.CacheDir = None,
) -> None:
    """Show versions, cached pretrained models and base bundles, and the task's data fingerprint."""
    versions = Table(title="versions", show_header=False)
    versions.add_row("fedlora", __version__)
    versions.add_row("python", platform.python_version())
    for distribution in ("numpy", "torch", "flwr", "ray", "safetensors", "cryptography"):
        versions.add_row(distribution, _version_of(distribution))
    console.print(versions)

    root = cache_root(cache_dir)
    cached = Table(title=f"cache {root}")
    for column in ("kind", "name", "bytes", "details"):
        cached.add_column(column)
    for path in sorted((root / "pretrained").glob("*.safetensors")):
        cached.add_row("pretrained", path.name, f"{path.stat().st_size:,}", "")
    # bases built here, and bases this machine received as a client (named by their id)
    for kind, folder in (("base", "bases"), ("received base", "received")):
        for path in sorted((root / folder).glob("*/manifest.json")):
            manifest = json.loads(path.read_text())
            size = sum(f.stat().st_size for f in path.parent.iterdir())
            layers = manifest.get("layers", [])
            details = f"task {manifest['task']['name']}, {len(layers)} factorized layers, data {manifest['task']['fingerprint'][:12]}"
            cached.add_row(kind, path.parent.name[:40], f"{size:,}", details)
    console.print(cached)

    from fedlora.cli.common import load_task

    the_task = load_task(task, None, seed, corpus)
    console.print(f"task {the_task.describe()}")
    console.print(f"data fingerprint {the_task.fingerprint}")
