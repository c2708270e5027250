"""textlm with the user's own text (``corpus=DIR``): documents, errors, public split, fingerprint."""

import string
from pathlib import Path

import numpy as np
import pytest

from fedlora.errors import FedloraError
from fedlora.tasks import load_task
from fedlora.tasks.corpus import Document, directory_documents, public_rank, split_public

SMALL = {"context": 8, "min_chars": 100}  # small documents suffice for a context of 8


def write_text(path, alphabet: str, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rng.choice(list(alphabet), n)) + "\n")


@pytest.fixture
def corpus(tmp_path):
    """Four single-file clients and two folder clients, each with its own alphabet."""
    root = tmp_path / "corpus"
    for i, alphabet in enumerate(["abc \n", "xyz \n", "0123 \n", "!?#$ \n"]):
        write_text(root / f"file{i}.txt", alphabet, seed=i)
    write_text(root / "alice" / "b.txt", "ABC \n", seed=10)
    write_text(root / "alice" / "a.txt", "DEF \n", seed=11)
    write_text(root / "alice" / "deeper" / "c.md", "GHI \n", seed=12)
    write_text(root / "bob" / "notes.txt", string.ascii_lowercase, seed=13)
    (root / ".hidden").write_bytes(b"\0\1binary but ignored")
    (root / "bob" / ".DS_Store").write_bytes(b"\0\0\0")
    return root


def test_one_document_per_file_and_per_subfolder(corpus):
    documents = directory_documents(corpus, max_chars=10_000)
    assert [d.name for d in documents] == ["alice", "bob", "file0.txt", "file1.txt", "file2.txt", "file3.txt"]
    alice = documents[0]
    assert [name for name, _ in alice.files] == ["alice/a.txt", "alice/b.txt", "alice/deeper/c.md"]
    expected = "".join((corpus / name).read_text() for name, _ in alice.files)
    assert alice.text == expected and alice.num_chars == len(expected)


def test_clients_and_public_cover_the_corpus_without_overlap(corpus):
    task = load_task("textlm", corpus=str(corpus), **SMALL)
    names = task.client_names + task.public_names
    assert sorted(names) == ["alice", "bob", "file0.txt", "file1.txt", "file2.txt", "file3.txt"]
    assert task.public_names and task.client_names
    assert task.client(0).name == f"corpus:{task.client_names[0]}"
    assert task.public().name == "corpus:public"
    assert task.config["corpus"] == str(corpus.resolve())


def test_fingerprint_follows_content_not_location(corpus, tmp_path):
    first = load_task("textlm", corpus=str(corpus), **SMALL).fingerprint
    copy = tmp_path / "copy"
    for path in corpus.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(corpus)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(corpus)).write_bytes(path.read_bytes())
    assert load_task("textlm", corpus=str(copy), **SMALL).fingerprint == first
    (copy / "bob" / "notes.txt").write_text("changed " * 50)
    changed = tmp_path / "changed"
    copy.rename(changed)  # a new path: the per-process cache keys on the resolved path
    assert load_task("textlm", corpus=str(changed), **SMALL).fingerprint != first


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FedloraError, match="nowhere.*does not exist"):
        load_task("textlm", corpus=str(tmp_path / "nowhere"))


def test_a_file_instead_of_a_folder_is_named(corpus):
    with pytest.raises(FedloraError, match="file0.txt.*is a file"):
        load_task("textlm", corpus=str(corpus / "file0.txt"))


def test_empty_corpus_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FedloraError, match="empty.*holds no files"):
        load_task("textlm", corpus=str(tmp_path / "empty"))


@pytest.mark.parametrize(("content", "reason"), [(b"text\0more", "binary"), (b"caf\xe9 latin-1", "not UTF-8")])
def test_binary_or_non_utf8_file_is_named(corpus, content, reason):
    (corpus / "bob" / "image.png").write_bytes(content)
    with pytest.raises(FedloraError, match=rf"image.png.*{reason}"):
        load_task("textlm", corpus=str(corpus), **SMALL)


def test_unreadable_file_is_named(corpus, monkeypatch):
    # simulated, because root may read a file whatever its mode
    real_read_bytes = Path.read_bytes

    def read_bytes(path):
        if path.name == "file0.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(FedloraError, match="cannot read.*file0.txt.*Permission denied"):
        load_task("textlm", corpus=str(corpus), **SMALL)


def test_too_short_document_is_named_with_the_option_to_change(corpus):
    (corpus / "tiny.txt").write_text("too short\n")
    with pytest.raises(FedloraError, match="'tiny.txt'.*min_chars=100.*lower min_chars"):
        load_task("textlm", corpus=str(corpus), **SMALL)


def test_a_single_document_cannot_make_a_federation(tmp_path):
    write_text(tmp_path / "only" / "one.txt", "abc \n")
    with pytest.raises(FedloraError, match="at least 2 documents"):
        load_task("textlm", corpus=str(tmp_path / "only"), **SMALL)


def test_public_rank_is_stable():
    # a golden value: if the hash or its salt changes, every cached pretrained base is stale
    assert public_rank("json") == pytest.approx(0.220245, abs=1e-6)


@pytest.mark.parametrize("fraction", [1e-9, 1 - 1e-9])
def test_split_public_keeps_both_sides_non_empty(fraction):
    documents = [Document(name, "x", 1, ()) for name in ("a", "b", "c")]
    public, clients = split_public(documents, fraction)
    assert public and clients and len(public) + len(clients) == 3
