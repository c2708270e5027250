"""Folders named on the command line, checked before any work starts: a run of minutes must
never end on a path that was a file, missing or unwritable from the start."""

from __future__ import annotations

import os
from pathlib import Path

from fedlora.errors import FedloraError


def writable_folder(path: Path, option: str, mode: int = 0o777) -> Path:
    """``path`` as a folder this process can write into, created (with ``mode``) if missing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise FedloraError(f"{option} {path} is a file; give a folder (it is created if missing)")
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as error:
        raise FedloraError(f"{option} {path} cannot be created (cannot create folders there: {error.strerror}); give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FedloraError(f"{option} {path} is not writable; give a folder you can write to")
    return path


def existing_folder(path: Path, option: str) -> Path:
    """``path``, which must be an existing folder."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FedloraError(f"{option} {path} is not a folder" + (" (it is a file)" if path.exists() else " (it does not exist)"))
    return path
