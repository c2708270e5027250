"""parse_options: the boundary where loose user input becomes a validated options dataclass."""

from dataclasses import dataclass

import pytest

from fedlora.errors import FedloraError
from fedlora.tasks.validation import as_config, parse_options


@dataclass(frozen=True)
class Options:
    size: int = 3
    rate: float = 0.5
    name: str | None = None
    flag: bool = False
    widths: tuple[int, ...] = (8, 4)


def test_defaults_and_typed_values_pass_through():
    assert parse_options(Options, {}, task="t") == Options()
    assert parse_options(Options, {"size": 5, "rate": 1, "widths": [2]}, task="t") == Options(size=5, rate=1.0, widths=(2,))


def test_strings_from_the_command_line_are_converted():
    parsed = parse_options(Options, {"size": "7", "rate": "0.25", "name": "none", "flag": "yes", "widths": "16,8"}, task="t")
    assert parsed == Options(size=7, rate=0.25, name=None, flag=True, widths=(16, 8))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 2.5}, "size=2.5 of task 't' must be a whole number"),
        ({"size": True}, "whole number"),
        ({"rate": "fast"}, "must be a number"),
        ({"flag": "maybe"}, "true or false"),
        ({"widths": "8,x"}, "whole number"),
        ({"colour": 1, "shape": 2}, "no option 'colour', 'shape'; its options are: size=3, rate=0.5"),
    ],
)
def test_bad_values_name_the_option_and_the_expectation(options, message):
    with pytest.raises(FedloraError, match=message):
        parse_options(Options, options, task="t")


def test_as_config_is_json_ready():
    assert as_config(Options()) == {"size": 3, "rate": 0.5, "name": None, "flag": False, "widths": [8, 4]}
