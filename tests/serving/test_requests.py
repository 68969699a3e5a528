"""The request model's grammar (serving/requests.py): seed and label lists as the command line
and HTTP take them; each rule's message names the field, the value and what is allowed."""

import pytest

from serving.errors import ServingError
from serving.requests import parse_seeds


def test_seed_ranges_and_errors():
    assert parse_seeds("0-3,10") == [0, 1, 2, 3, 10]
    for bad, message in (("5-2", "not allowed"), ("a", "not a seed"), ("1,1", "more than once"),
                         ("-3", "not a seed")):
        with pytest.raises(ServingError, match=message):
            parse_seeds(bad)


def test_one_label_grammar_allows_repeats_and_ranges():
    from serving.requests import parse_labels

    assert parse_labels("1,1,2") == [1, 1, 2]
    assert parse_labels("0-3,1") == [0, 1, 2, 3, 1]
    for bad, message in (("a", "--labels: 'a' is not a class index"), ("3-1", "'3-1' is not allowed")):
        with pytest.raises(ServingError, match=message):
            parse_labels(bad)
