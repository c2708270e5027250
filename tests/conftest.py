"""Suite-wide settings, and one cache of built base models for the whole session."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# The suite's models are tiny: torch's thread pool only adds contention on small machines
# (a 2-core CI box runs several simulated clients at once).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the device runtime's tests run without torch
    pass

#: the folders of a fedlora cache that hold what the server builds (see fedlora/cache.py)
BUILT = ("pretrained", "bases")


class SharedBases:
    """Pretrained models and base bundles built once per test session, for every worker.

    fedlora caches a build under ``<cache>/pretrained/<task>-<key>`` and
    ``<cache>/bases/<task>-<key>``, keyed by everything that determines it, so tests that
    ask for the same base (same task, config and seed) can share one. Those two folders live
    here, in the session's temporary root, which pytest-xdist's workers share. A test gets
    a cache folder of its own (``cache_folder``) whose ``pretrained/`` and ``bases/`` link
    to the shared ones, while what a client receives (``received/``) stays its own.

    Build under ``building(task)``: a file lock per task, so when two workers need the same
    base one builds it and the other then finds it in the cache. Every file of a build is
    named after its task, so builds of different tasks never touch the same file.

    Tests of the cache itself (cold builds, misses) keep a fresh cache instead.
    """

    def __init__(self, root: Path):
        self.root = root
        for folder in BUILT:
            (root / folder).mkdir(parents=True, exist_ok=True)

    def cache_folder(self, folder: Path) -> Path:
        """A new cache folder whose built models are the shared ones; returns ``folder``."""
        folder.mkdir(parents=True)
        for name in BUILT:
            (folder / name).symlink_to(self.root / name, target_is_directory=True)
        return folder

    @contextmanager
    def building(self, task: str) -> Iterator[None]:
        from filelock import FileLock  # installed with torch, which every build needs

        with FileLock(self.root / f"{task}.lock"):
            yield


@pytest.fixture(scope="session")
def shared_bases(tmp_path_factory) -> SharedBases:
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's basetemp is a folder of the session's root
    return SharedBases(root / "shared-bases")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, hand out the files with end-to-end runs first: they take minutes,
    and the short tests then fill the other workers around them. (With ``--dist loadfile
    --no-loadscope-reorder`` a file is one unit of work, handed out in this order; xdist's
    default order, most tests first, would start the one-test deployment file last.)"""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    e2e_files = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in e2e_files)  # stable: the order within is kept
