"""``textlm``: next-character prediction, one client per body of text (the default task).

By default every client is one module or package of the running Python's standard library
(``stdlib:json``, ``stdlib:asyncio``, ...): real, local, varied text whose character
statistics differ from client to client (prose-heavy ``pydoc_data`` against table-heavy
``encodings`` against ordinary code). With the ``corpus`` option the documents are the
user's own files instead (see :mod:`fedlora.tasks.corpus`).

Each document is cut to its first ``max_chars`` characters. A client trains on the head
and is tested on the tail (the last ``test_fraction``): its own "future" text. The server's
public documents are chosen by a stable hash of their names (not by the seed), so clients
never see public text and a base pretrained on it stays valid across seeds; the public test
split is the tail of each public document.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fedlora.errors import FedloraError
from fedlora.tasks import vocab
from fedlora.tasks.base import Partition, Task
from fedlora.tasks.char_transformer import CharTransformer
from fedlora.tasks.corpus import Document, directory_documents, fingerprint, split_public, stdlib_documents
from fedlora.tasks.datasets import TokenStream
from fedlora.tasks.validation import as_config, check, check_client_index, parse_options


@dataclass(frozen=True)
class TextLMOptions:
    """Options of ``textlm``; every one appears in the task's ``config``."""

    #: a folder of the user's own UTF-8 text files (one client per file or subfolder);
    #: ``None`` uses the standard library of the running Python
    corpus: str | None = None
    #: tokens the model sees at once (and the length of every training window)
    context: int = 64
    #: width of the residual stream
    d_model: int = 64
    #: number of transformer blocks
    n_layers: int = 2
    #: attention heads per block; must divide ``d_model``
    n_heads: int = 4
    #: hidden width of each block's feed-forward layer
    d_ff: int = 256
    #: each document is cut to its first ``max_chars`` characters
    max_chars: int = 65_536
    #: shorter documents are skipped (stdlib) or rejected (``corpus``)
    min_chars: int = 8_192
    #: the tail of each document held out as its test set
    test_fraction: float = 0.15
    #: share of documents that go to the server as public data, by a stable hash of the name
    public_fraction: float = 0.25
    #: cap on the total characters of public text (documents taken in name order)
    max_public_chars: int = 1_500_000

    def __post_init__(self) -> None:
        for name in ("context", "d_model", "n_layers", "n_heads", "d_ff", "max_chars"):
            value = getattr(self, name)
            check(value >= 1, f"textlm option {name}={value} must be at least 1")
        check(
            self.d_model % self.n_heads == 0,
            f"textlm option d_model={self.d_model} must be divisible by n_heads={self.n_heads}; "
            f"pick n_heads from the divisors of {self.d_model}",
        )
        check(
            0 < self.test_fraction <= 0.5,
            f"textlm option test_fraction={self.test_fraction} must be in (0, 0.5]",
        )
        check(
            0 < self.public_fraction < 1,
            f"textlm option public_fraction={self.public_fraction} must be strictly between 0 and 1",
        )
        # Every held-out tail must hold at least one window of context+1 tokens. Used documents
        # have at least `shortest_document` characters, and tab expansion only lengthens.
        check(
            self.shortest_document >= self.least_usable_chars,
            f"textlm options min_chars={self.min_chars}, max_chars={self.max_chars} are too small for "
            f"context={self.context} and test_fraction={self.test_fraction}: each document's test tail "
            f"must hold {self.context + 1} characters; set both to at least {self.least_usable_chars}",
        )
        check(
            self.max_public_chars >= self.shortest_document,
            f"textlm option max_public_chars={self.max_public_chars} leaves no room for one public "
            f"document; set it to at least {self.shortest_document}",
        )

    @property
    def shortest_document(self) -> int:
        """The fewest characters any used document (or public document piece) has."""
        return min(self.min_chars, self.max_chars)

    @property
    def least_usable_chars(self) -> int:
        """The shortest document whose test tail still holds one window of ``context + 1``."""
        chars = math.ceil((self.context + 1) / self.test_fraction)
        while int(chars * self.test_fraction) < self.context + 1:  # float rounding
            chars += 1
        return chars


class TextLMTask(Task):
    """Character-level language modelling over the stdlib (or a user corpus), one client per document."""

    name: ClassVar[str] = "textlm"
    default_targets: ClassVar[str] = r"blocks\.\d+\.(attn\.(q|k|v|o)|ffn\.(fc1|fc2))$"
    # The FFN output projections personalize best per byte sent (measured with
    # `fedlora simulate --clients 30 --targets ...`: see the README's figures).
    default_adapter_targets: ClassVar[str | None] = r"ffn\.fc2$"

    def __init__(self, num_clients: int | None = None, seed: int = 0, **options: Any):
        self.options = parse_options(TextLMOptions, options, task=self.name)
        if self.options.corpus is not None:
            # resolved, so that `config` names the same folder from any working directory
            self.options = dataclasses.replace(self.options, corpus=_resolved(self.options.corpus))
        self.seed = seed
        documents = self._read_documents()
        public, candidates = split_public(documents, self.options.public_fraction)
        self._public = _within_budget(public, self.options.max_public_chars, self.options.shortest_document)
        self._clients = _choose_clients(candidates, num_clients, seed, self._source)
        self._fingerprint = fingerprint(self._clients + self._public)

    @property
    def num_clients(self) -> int:
        return len(self._clients)

    @property
    def config(self) -> dict[str, Any]:
        return {"task": self.name, "num_clients": self.num_clients, "seed": self.seed, **as_config(self.options)}

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def client_names(self) -> tuple[str, ...]:
        """The document behind each client, in client order (``"json"``, ``"notes.txt"``)."""
        return tuple(document.name for document in self._clients)

    @property
    def public_names(self) -> tuple[str, ...]:
        """The documents that make up the server's public data."""
        return tuple(document.name for document in self._public)

    def build_model(self) -> nn.Module:
        o = self.options
        return CharTransformer(vocab.VOCAB_SIZE, o.context, o.d_model, o.n_layers, o.n_heads, o.d_ff)

    def client(self, index: int) -> Partition:
        check_client_index(index, self.num_clients, task=self.name)
        document = self._clients[index]
        train, test = self._split(document)
        return Partition(f"{self._source}:{document.name}", self._stream(train), self._stream(test))

    def public(self) -> Partition:
        heads, tails = zip(*(self._split(document) for document in self._public))
        train, test = np.concatenate(heads), np.concatenate(tails)
        return Partition(f"{self._source}:public", self._stream(train), self._stream(test))

    @property
    def _source(self) -> str:
        return "stdlib" if self.options.corpus is None else "corpus"

    def _read_documents(self) -> tuple[Document, ...]:
        """The usable documents (at least two): long enough, read from the chosen source."""
        o = self.options
        if o.corpus is None:
            # incidental text: tiny modules (e.g. `this`, `keyword`) would make noisy clients
            documents = tuple(d for d in stdlib_documents(o.max_chars) if d.num_chars >= o.min_chars)
        else:
            documents = directory_documents(o.corpus, o.max_chars)
            too_short = [d for d in documents if d.num_chars < o.min_chars]
            check(
                not too_short,
                f"corpus {o.corpus!r}: {', '.join(repr(d.name) for d in too_short[:5])} "
                f"{'has' if len(too_short) == 1 else 'have'} fewer than min_chars={o.min_chars} "
                f"characters (shortest: {min((d.num_chars for d in too_short), default=0)}); "
                f"add text, or lower min_chars (to no less than {o.least_usable_chars})",
            )
        where = "the standard library" if o.corpus is None else f"corpus {o.corpus!r}"
        check(
            len(documents) >= 2,
            f"textlm needs at least 2 documents (one public, one client) but {where} has "
            f"{len(documents)} with at least min_chars={o.min_chars} characters; add documents",
        )
        return documents

    def _split(self, document: Document) -> tuple[np.ndarray, np.ndarray]:
        """``(head, tail)`` token ids of ``document``; the tail is its last ``test_fraction``."""
        tokens = vocab.encode(document.text)
        held_out = int(len(tokens) * self.options.test_fraction)
        return tokens[:-held_out], tokens[-held_out:]

    def _stream(self, tokens: np.ndarray) -> TokenStream:
        return TokenStream(torch.from_numpy(tokens), self.options.context)


def _within_budget(documents: tuple[Document, ...], budget: int, shortest: int) -> tuple[Document, ...]:
    """The leading documents whose text fits in ``budget`` characters; the last one may be cut.

    A remainder shorter than ``shortest`` is dropped rather than cut, so every piece still
    has room for a test window.
    """
    kept = []
    for document in documents:
        if budget < shortest:
            break
        if len(document.text) > budget:
            document = dataclasses.replace(document, text=document.text[:budget])
        kept.append(document)
        budget -= len(document.text)
    return tuple(kept)


def _choose_clients(
    candidates: tuple[Document, ...], num_clients: int | None, seed: int, source: str
) -> tuple[Document, ...]:
    """``num_clients`` documents picked by ``seed`` (all if ``None``), kept in name order."""
    if num_clients is None:
        return candidates
    if not 1 <= num_clients <= len(candidates):
        where = "the standard library of this Python" if source == "stdlib" else "this corpus"
        raise FedloraError(
            f"textlm cannot make {num_clients} clients: {where} has {len(candidates)} client "
            f"documents (after setting aside the public ones). Ask for 1 to {len(candidates)}, "
            "bring more text with the corpus option (--corpus DIR), or use the synthetic task, "
            "which scales to any number of clients"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(candidates), size=num_clients, replace=False))
    return tuple(candidates[i] for i in chosen)


def _resolved(path: str) -> str:
    return str(Path(path).expanduser().resolve())
