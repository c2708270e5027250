"""The fixed character vocabulary of the ``textlm`` task.

Ninety-seven ids, chosen once and never reordered (a pretrained model, a base bundle and a
device all rely on them):

====  ===================================================
id    character
====  ===================================================
0     unknown: anything not listed below (e.g. ``é``, ``\\r``)
1     newline ``\\n``
2–96  printable ASCII 32–126 (space ``' '`` to ``'~'``), in code-point order
====  ===================================================

A tab is expanded to four spaces before encoding, so it never costs the unknown id. Text
is expected with ``\\n`` newlines, as Python's text mode (universal newlines) reads it.
"""

from __future__ import annotations

import numpy as np

UNKNOWN = 0
NEWLINE = 1
FIRST_PRINTABLE = 32  # ' '
LAST_PRINTABLE = 126  # '~'
VOCAB_SIZE = 2 + LAST_PRINTABLE - FIRST_PRINTABLE + 1  # 97
TAB_EXPANSION = " " * 4

# id of every code point below 128; code points from 128 up are UNKNOWN
_ID_OF_ASCII = np.full(128, UNKNOWN, dtype=np.uint8)
_ID_OF_ASCII[ord("\n")] = NEWLINE
_ID_OF_ASCII[FIRST_PRINTABLE : LAST_PRINTABLE + 1] = np.arange(2, VOCAB_SIZE, dtype=np.uint8)

# character of every id, for decoding; the unknown id reads back as U+FFFD
_CHAR_OF_ID = ["\ufffd", "\n"] + [chr(code) for code in range(FIRST_PRINTABLE, LAST_PRINTABLE + 1)]


def encode(text: str) -> np.ndarray:
    """Token ids (uint8, one per character after tab expansion) of ``text``."""
    text = text.replace("\t", TAB_EXPANSION)
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    # 127 (DEL) is itself unknown, so clamping sends every non-ASCII code point to UNKNOWN
    return _ID_OF_ASCII[np.minimum(code_points, 127)]


def decode(ids: np.ndarray | list[int]) -> str:
    """The text of token ``ids``; inverse of :func:`encode` on tab-free printable ASCII."""
    return "".join(_CHAR_OF_ID[int(i)] for i in ids)
