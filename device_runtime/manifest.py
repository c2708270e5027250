"""A bundle folder and its manifest: the one place where the files a manifest pins are checked.

Both kinds of bundle — the frozen base every client downloads (``fedlora-base/1``,
``fedlora.bundle``) and the personalized model a device runs (``fedlora-device/1``,
:mod:`.bundle`) — are a folder holding ``manifest.json`` and the files it pins::

    "format": "<kind>/<version>",
    "files": {"<name>": {"sha256": "<64 hex digits>", "bytes": <size>}, ...}

``manifest.json`` itself is not listed (a bundle's id is its SHA-256), nor is a detached
signature of it. A folder, or a set of files received over the wire, passes
:func:`read_files` / :func:`verify_files` when

* every listed name is a plain file name inside the folder (no ``/``, ``\\``, ``..``);
* every listed file is present, of the listed size and SHA-256;
* nothing else is there, apart from the names the bundle kind allows unlisted.

What each kind requires beyond that (its keys, which files it may list) its own module
checks; each wraps :class:`ManifestError` in its own error type. Numpy-free: the stdlib
alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "ManifestError",
    "WrongFormat",
    "file_entries",
    "parse_manifest",
    "read_files",
    "sha256_hex",
    "verify_files",
    "write_atomically",
]

MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A manifest, or a file it pins, failed a check. The message names the file and the
    problem, not the folder: the bundle that wraps it adds where, and what to do."""


class WrongFormat(ManifestError):
    """``manifest.json`` is not of the expected ``format``: not a bundle of this kind."""

    def __init__(self, found: Any, expected: str):
        super().__init__(f"{MANIFEST} has format {found!r}, expected {expected!r}")
        self.found, self.expected = found, expected


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entries(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """The manifest's ``files``: SHA-256 and size of each file, by name."""
    return {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in files.items()}


def parse_manifest(manifest_bytes: bytes, expected_format: str) -> dict[str, Any]:
    """``manifest.json`` as a dict of format ``expected_format``.

    Raises :class:`ManifestError` if it is not JSON, :class:`WrongFormat` if it is not an
    object with that ``format``.
    """
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{MANIFEST} is not valid JSON ({exc})") from exc
    except RecursionError:
        raise ManifestError(f"{MANIFEST} nests JSON too deeply") from None
    if not isinstance(manifest, dict):
        raise WrongFormat(type(manifest).__name__, expected_format)
    if manifest.get("format") != expected_format:
        raise WrongFormat(manifest.get("format"), expected_format)
    return manifest


def read_files(
    directory: Path, manifest: Mapping[str, Any], unlisted: Collection[str] = (MANIFEST,)
) -> dict[str, bytes]:
    """The files ``manifest`` lists, read from ``directory`` and checked (see the module
    docstring); ``unlisted``: the names that may be in the folder without being listed."""
    listing = _listing(manifest, unlisted)
    files = {name: (directory / name).read_bytes() for name in listing if (directory / name).is_file()}
    present = {path.name for path in directory.iterdir()}
    _check(listing, files, present - set(unlisted))
    return files


def verify_files(
    manifest: Mapping[str, Any], files: Mapping[str, bytes], unlisted: Collection[str] = (MANIFEST,)
) -> None:
    """Check files received by name (e.g. over the wire) against ``manifest``, as
    :func:`read_files` checks a folder."""
    _check(_listing(manifest, unlisted), files, set(files) - set(unlisted))


def _listing(manifest: Mapping[str, Any], unlisted: Collection[str]) -> dict[str, dict[str, Any]]:
    listing = manifest.get("files")
    if not isinstance(listing, dict):
        raise ManifestError(f"{MANIFEST}: 'files' must map each file name to its 'sha256' and 'bytes'")
    for name, entry in listing.items():
        if not _plain_name(name) or name in unlisted:
            raise ManifestError(f"{MANIFEST} lists {name!r}, which is not a plain file name inside the bundle folder")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool)):
            raise ManifestError(f"{MANIFEST}: entry of {name} needs 'sha256' (a string) and 'bytes' (an integer)")
    return listing


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _check(listing: Mapping[str, Mapping[str, Any]], files: Mapping[str, bytes], present: set[str]) -> None:
    for name, expected in listing.items():
        if name not in files:
            raise ManifestError(f"{name} is listed in {MANIFEST} but missing")
        data = files[name]
        if len(data) != expected["bytes"]:
            raise ManifestError(
                f"{name} is {len(data)} bytes, {MANIFEST} says {expected['bytes']} (truncated or replaced)"
            )
        actual = sha256_hex(data)
        if actual != expected["sha256"]:
            raise ManifestError(f"{name} has SHA-256 {actual[:16]}…, {MANIFEST} says {expected['sha256'][:16]}…")
    extra = sorted(present - set(listing))
    if extra:
        raise ManifestError(f"holds {extra[:5]}, which {MANIFEST} does not list")


def write_atomically(directory: Path, files: Mapping[str, bytes], overwrite: bool = True) -> bool:
    """Write into a temporary sibling, then rename: readers never see half a bundle.

    ``overwrite=False`` is for content-addressed folders that several writers may fill at
    once (simulated clients share one cache): a folder that already exists, or appears
    while this one is staged, is left as it is — never removed under a reader — and
    nothing is written. Returns whether this call wrote the folder.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    if directory.exists() and not overwrite:
        return False
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if directory.exists() and overwrite:
            shutil.rmtree(directory)
        try:
            os.replace(staging, directory)
        except OSError:
            if overwrite or not directory.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another writer's copy won the race
            return False
        return True
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
