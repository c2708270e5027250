"""Suite-wide settings."""

import os

# The suite's models are tiny: torch's thread pool only adds contention on small machines
# (a 2-core CI box runs several simulated clients at once).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the device runtime's tests run without torch
    pass
