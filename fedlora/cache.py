"""Where fedlora keeps what it computed once: pretrained models and base bundles.

The cache root is, in order: an explicit ``--cache-dir``, the ``FEDLORA_CACHE``
environment variable, or ``~/.cache/fedlora``. Entries are keyed by a hash of everything
that determines them, so a changed config never reuses a stale entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

ENV_VAR = "FEDLORA_CACHE"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "fedlora"


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-serializable value (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
