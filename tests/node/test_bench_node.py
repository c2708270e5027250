"""bench_node's measurements: a process tree's memory, read from /proc."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedlora.simulations.bench_node import DeploymentResult, NodeMemory, process_tree, report, tree_memory

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc only")


def test_a_tree_counts_its_children_and_their_memory():
    alone, _ = tree_memory(os.getpid())
    script = "import sys; block = bytearray(64 * 2**20); block[::4096] = b'x' * len(block[::4096]); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        for _ in range(100):  # until the child has touched its 64 MiB
            resident, private = tree_memory(os.getpid())
            if resident - alone > 60 * 2**20:
                break
            subprocess.run(["sleep", "0.1"])
        assert child.pid in process_tree(os.getpid())
        assert resident - alone > 60 * 2**20 and private > 60 * 2**20
    finally:
        child.communicate(b"")


def test_the_report_says_whether_the_peak_is_within_the_budget():
    result = DeploymentResult("fedlora-node", {"node0": NodeMemory(peak_resident=400 * 2**20)}, 4.5, 20.0, 1, 2, 3, 4, "completed")
    assert "fedlora-node: peak 400 MiB, within it" in report([result], None, 416 * 2**20)
    assert "over it by 32 MiB" in report([result], None, 368 * 2**20)
