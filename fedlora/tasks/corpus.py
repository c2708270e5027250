"""Finding and reading the text of the ``textlm`` task, splitting off public text, fingerprinting it.

A corpus is a sequence of :class:`Document` s, each of which can become one client (or part
of the server's public data). Two sources exist:

* the standard library of the running Python (the default): one document per top-level
  module (``json``, ``argparse``, ...), where a package is all its ``.py`` files in sorted
  order;
* a user's directory: one document per file, or per immediate subfolder (all files inside,
  recursively, sorted).

Reading is cached per process (``functools.lru_cache``, keyed by the resolved path and the
cap): simulations construct the task once per simulated client in one process, and the
standard library is ~11 MB. The cache assumes the files do not change while the process
runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedlora.errors import FedloraError

#: standard-library entries that never become documents: test suites (including lib2to3's
#: test data below its ``tests``), the IDE, third-party packages, bundled wheels, bytecode
STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "site-packages", "__pycache__", "ensurepip"})
#: generated at build time (configuration tables, not written text) and machine specific
STDLIB_GENERATED_PREFIXES = ("_sysconfigdata",)
#: what a user corpus directory may contain besides text: editor and VCS clutter, bytecode
_DIRECTORY_IGNORED_NAMES = frozenset({"__pycache__"})
#: salt of the public-split hash; changing it reshuffles every corpus's public split
_PUBLIC_SALT = b"fedlora/textlm/public:"


@dataclass(frozen=True)
class Document:
    """The text one party would hold: a stdlib module or package, or a user file or folder.

    ``text`` is the document's files decoded as UTF-8 with universal newlines, each ending
    in ``"\\n"``, concatenated in sorted order and cut to the first ``max_chars`` characters
    the corpus was read with; ``num_chars`` is the length before the cut. ``files`` pairs
    each file's path relative to the corpus root (POSIX separators) with the SHA-256 of its
    bytes, for :func:`fingerprint`.
    """

    name: str
    text: str
    num_chars: int
    files: tuple[tuple[str, str], ...]


def stdlib_root() -> Path:
    """The directory of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def stdlib_documents(max_chars: int) -> tuple[Document, ...]:
    """One document per top-level stdlib module or package, sorted by name (cached)."""
    return _read_stdlib(str(stdlib_root()), max_chars)


def directory_documents(path: str | os.PathLike[str], max_chars: int) -> tuple[Document, ...]:
    """One document per file or immediate subfolder of ``path``, sorted by name (cached).

    Hidden entries (names starting with ``.``) and ``__pycache__`` are ignored. Raises
    FedloraError, naming the path, if ``path`` is missing, not a directory, unreadable,
    holds no files, or holds a file that is not UTF-8 text.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FedloraError(f"corpus directory {str(path)!r} does not exist; pass a folder of text files")
    if not root.is_dir():
        raise FedloraError(
            f"corpus {str(path)!r} is a file; pass a folder of text files (one client per file "
            "or per subfolder)"
        )
    return _read_directory(str(root.resolve()), max_chars)


def public_rank(name: str) -> float:
    """A stable pseudo-random number in [0, 1) for a document name.

    It depends on the name alone (not on the seed, the machine or the other documents), so
    a document is public or not in every run, and a pretrained base stays valid.
    """
    digest = hashlib.sha256(_PUBLIC_SALT + name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_public(
    documents: Sequence[Document], fraction: float
) -> tuple[tuple[Document, ...], tuple[Document, ...]]:
    """``(public, clients)``: documents whose :func:`public_rank` is below ``fraction`` are public.

    Both sides are kept non-empty (for a small corpus the hash may pick none or all): the
    lowest-ranked document is then made public, or the highest-ranked one a client. Needs at
    least two documents; order within each side is preserved.
    """
    if len(documents) < 2:
        raise ValueError(f"split_public needs at least 2 documents, got {len(documents)}")
    ranks = {document.name: public_rank(document.name) for document in documents}
    public_names = {name for name, rank in ranks.items() if rank < fraction}
    if not public_names:
        public_names = {min(ranks, key=ranks.__getitem__)}
    elif len(public_names) == len(documents):
        public_names.remove(max(ranks, key=ranks.__getitem__))
    public = tuple(document for document in documents if document.name in public_names)
    clients = tuple(document for document in documents if document.name not in public_names)
    return public, clients


def fingerprint(documents: Iterable[Document]) -> str:
    """SHA-256 (hex) over the sorted ``(relative name, SHA-256 of bytes)`` of every file used."""
    digest = hashlib.sha256()
    for name, file_digest in sorted(file for document in documents for file in document.files):
        digest.update(f"{name}\0{file_digest}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _read_stdlib(root: str, max_chars: int) -> tuple[Document, ...]:
    base = Path(root)
    documents = []
    for entry in sorted(base.iterdir(), key=lambda entry: entry.name):
        if entry.name in STDLIB_SKIP or entry.name.startswith(STDLIB_GENERATED_PREFIXES):
            continue
        if entry.is_file() and entry.suffix == ".py":
            documents.append(_read_document(entry.stem, [entry], base, max_chars))
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            files = _files_below(entry, keep=lambda path: path.suffix == ".py", skip_dirs=STDLIB_SKIP)
            documents.append(_read_document(entry.name, files, base, max_chars))
    return tuple(documents)


@functools.lru_cache(maxsize=4)
def _read_directory(root: str, max_chars: int) -> tuple[Document, ...]:
    base = Path(root)
    documents = []
    for entry in sorted(_visible_entries(base), key=lambda entry: entry.name):
        if entry.is_file():
            documents.append(_read_document(entry.name, [entry], base, max_chars))
        elif entry.is_dir():
            files = _files_below(entry, keep=_is_visible, skip_dirs=_DIRECTORY_IGNORED_NAMES)
            if not files:
                raise FedloraError(f"corpus folder {str(entry)!r} holds no files; add text files or remove it")
            documents.append(_read_document(entry.name, files, base, max_chars))
    if not documents:
        raise FedloraError(
            f"corpus directory {root!r} holds no files; add text files (one client per file or subfolder)"
        )
    return tuple(documents)


def _read_document(name: str, files: Sequence[Path], base: Path, max_chars: int) -> Document:
    texts, digests = [], []
    for path in files:
        text, digest = _read_text(path)
        # end every file with a newline, so one file's last line never runs into the next's
        texts.append(text if text.endswith("\n") or not text else text + "\n")
        digests.append((path.relative_to(base).as_posix(), digest))
    text = "".join(texts)
    return Document(name=name, text=text[:max_chars], num_chars=len(text), files=tuple(digests))


def _read_text(path: Path) -> tuple[str, str]:
    """``(text with universal newlines, SHA-256 of the bytes)`` of one file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FedloraError(f"cannot read corpus file {str(path)!r}: {exc.strerror or exc}") from exc
    # a NUL byte is valid UTF-8 but never appears in text: it marks a binary file
    if b"\0" in data:
        raise FedloraError(
            f"corpus file {str(path)!r} is binary (it contains NUL bytes); remove it from the corpus"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FedloraError(
            f"corpus file {str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "remove it from the corpus or convert it to UTF-8"
        ) from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, hashlib.sha256(data).hexdigest()


def _files_below(folder: Path, *, keep, skip_dirs: frozenset[str]) -> list[Path]:
    """Every file below ``folder`` that ``keep`` accepts, sorted by relative path."""
    def raise_unreadable(exc: OSError) -> None:
        raise _unreadable(exc) from exc

    found = []
    for directory, subdirectories, filenames in os.walk(folder, onerror=raise_unreadable):
        subdirectories[:] = [name for name in subdirectories if name not in skip_dirs and _is_visible(Path(name))]
        found += [path for path in (Path(directory, name) for name in filenames) if keep(path)]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _visible_entries(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise _unreadable(exc) from exc
    return [entry for entry in entries if _is_visible(entry) and entry.name not in _DIRECTORY_IGNORED_NAMES]


def _is_visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _unreadable(exc: OSError) -> FedloraError:
    return FedloraError(f"cannot read corpus folder {exc.filename!r}: {exc.strerror or exc}")
