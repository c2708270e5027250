"""An output folder for credentials: never overwritten by accident; private files mode 0600.

A CA key or node key overwritten by a second run invalidates every device provisioned
with the first one, so a folder that already holds files is refused unless the user says
``--force``. Each file is written to a temporary file in the same folder, given its final
mode, and renamed into place, so a key is never readable by others, not even for a moment,
and never half-written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fedlora.errors import FedloraError
from fedlora.paths import writable_folder

PRIVATE = 0o600  # keys: owner only
PUBLIC = 0o644  # certificates and public keys


def prepare_output_dir(path: Path, force: bool) -> Path:
    """Create ``path`` (mode 0700) or accept it if empty, or if ``force``; return it absolute."""
    folder = Path(path).expanduser().absolute()
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise FedloraError(
            f"--out {folder} is not empty; choose a new folder, or pass --force to overwrite "
            "the files this command writes there (devices provisioned from them stop working)"
        )
    return writable_folder(folder, "--out", mode=0o700)


def write_file(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to ``path`` with exactly ``mode`` (whatever the umask), atomically."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise FedloraError(f"cannot write {path}: {exc.strerror}") from exc
    return path
