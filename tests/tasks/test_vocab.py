"""The textlm vocabulary is fixed: these ids are a contract with pretrained models and devices."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fedlora.tasks import vocab


def test_vocabulary_has_97_ids_in_the_documented_order():
    assert vocab.VOCAB_SIZE == 97
    assert vocab.encode("\n").tolist() == [1]
    assert vocab.encode(" !~").tolist() == [2, 3, 96]
    assert vocab.encode("A").tolist() == [2 + ord("A") - 32]


def test_characters_outside_printable_ascii_are_unknown():
    assert vocab.encode("é\r\x7f\x00€😀").tolist() == [vocab.UNKNOWN] * 6


def test_tab_expands_to_four_spaces():
    assert vocab.encode("\tx").tolist() == vocab.encode("    x").tolist()


def test_decode_inverts_encode_on_printable_ascii():
    text = "def f(x):\n    return {'a': x ~ 1}\n"
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == text
    assert vocab.decode([vocab.UNKNOWN]) == "\ufffd"


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.just("\n")))
def test_encode_decode_round_trip_property(text):
    assert vocab.decode(vocab.encode(text)) == text


@given(st.text())
def test_every_string_encodes_to_valid_ids_one_per_character(text):
    ids = vocab.encode(text)
    assert len(ids) == len(text) + 3 * text.count("\t")
    assert ids.max(initial=0) < vocab.VOCAB_SIZE
