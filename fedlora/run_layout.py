"""Where a federation leaves its files: the one place that names them.

An invocation of ``fedlora simulate`` (or ``flwr run``) writes under its output folder::

    <out>/
      summary.json               the invocation: every run's summary and the comparison
      metric_vs_bytes.png        the plot
      flower.log                 Flower's and Ray's log
      <run>/                     one folder per run (the method, or --run-name)
        rounds.jsonl             one JSON line per round, written as the run goes
        summary.json             the run's summary, written at the end
        global.safetensors       the final global state (what `fedlora export` reads)
      client-state/<run>/        each simulated client's own state (a device keeps it in
        <federation>/            its `state-dir` instead), one folder per federation and
          <client>.safetensors   base (:func:`fedlora.client_state.state_key`), one file per
                                 client, named by :func:`safe_name`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SUMMARY = "summary.json"
ROUNDS = "rounds.jsonl"
GLOBAL_STATE = "global.safetensors"
PLOT = "metric_vs_bytes.png"
FLOWER_LOG = "flower.log"
CLIENT_STATE = "client-state"


def safe_name(name: str) -> str:
    """A client or label as a file name: ``stdlib:json`` → ``stdlib_json``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass(frozen=True)
class InvocationLayout:
    """The output folder of one invocation, holding one or more runs."""

    out: Path

    @property
    def summary(self) -> Path:
        return self.out / SUMMARY

    @property
    def plot(self) -> Path:
        return self.out / PLOT

    @property
    def flower_log(self) -> Path:
        return self.out / FLOWER_LOG

    def run(self, name: str) -> RunLayout:
        return RunLayout(self.out / name)

    def runs(self) -> list[RunLayout]:
        """Every run that has recorded rounds, in name order."""
        return [RunLayout(path.parent) for path in sorted(self.out.glob(f"*/{ROUNDS}"))]

    def earlier(self) -> list[Path]:
        """What an earlier invocation left here: its files, its runs' folders and its
        clients' state — which a new invocation must not read (a client would resume an
        earlier invocation's residuals and personal adapters)."""
        files = [path for path in (self.summary, self.plot, self.flower_log) if path.exists()]
        state = self.out / CLIENT_STATE
        return files + [run.directory for run in self.runs()] + ([state] if state.exists() else [])

    def clear(self) -> list[Path]:
        """Remove :meth:`earlier` (fedlora's own files only); returns what was removed."""
        import shutil

        removed = self.earlier()
        for path in removed:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return removed


@dataclass(frozen=True)
class RunLayout:
    """The folder of one run."""

    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def rounds(self) -> Path:
        return self.directory / ROUNDS

    @property
    def summary(self) -> Path:
        return self.directory / SUMMARY

    @property
    def global_state(self) -> Path:
        return self.directory / GLOBAL_STATE

    @property
    def client_state(self) -> Path:
        """Where the run's simulated clients keep their state (a sibling of the run folder)."""
        return self.directory.parent / CLIENT_STATE / self.name


def client_state_file(directory: Path, federation: str, client_name: str) -> Path:
    return directory / federation / (safe_name(client_name) + ".safetensors")
