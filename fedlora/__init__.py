"""fedlora: federated on-device personalization with low-rank adapters.

Importing this package must stay cheap and must not import torch or flwr: the device
runtime (``fedlora.device_runtime``) runs with numpy alone.
"""

__version__ = "0.1.0"
