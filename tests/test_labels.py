"""Labels: class order, encoding, balance, and turning a label column into class names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bertfit.errors import DataError
from bertfit.labels import LabelSet, is_multi_label, normalise, normalise_multi


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["10", "2", "1", "2"], ("1", "2", "10")),
        (["-1", "0.5", "3", "-10"], ("-10", "-1", "0.5", "3")),
        (["pos", "neg", "neutral"], ("neg", "neutral", "pos")),
        (["b", "a", "C"], ("C", "a", "b")),
        (["10", "x", "2"], ("2", "10", "x")),  # numbers first, in numeric order
        (["True", "False"], ("False", "True")),
    ],
)
def test_fit_sorts_numerically_when_numbers_else_alphabetically(labels, expected):
    assert LabelSet.fit(labels).names == expected
    assert LabelSet.fit(reversed(labels)).names == expected


def test_ids_follow_the_sorted_names():
    labels = LabelSet.fit(["10", "2", "1"])
    assert labels.id2label == {0: "1", 1: "2", 2: "10"}
    assert labels.label2id == {"1": 0, "2": 1, "10": 2}
    assert len(labels) == 3


@pytest.mark.parametrize("labels, found", [(["a", "a", "a"], "only 'a'"), ([], "none")])
def test_fit_needs_two_classes(labels, found):
    with pytest.raises(DataError) as info:
        LabelSet.fit(labels, "stars")
    message = str(info.value)
    assert f"label column 'stars' has one class ({found})" in message
    assert "check --label-col" in message and "\n" not in message


def test_encode_maps_names_to_ids():
    encoded = LabelSet(("neg", "pos")).encode(["pos", "neg", "pos"])
    assert encoded.dtype == np.int64
    assert encoded.tolist() == [1, 0, 1]


def test_encode_unknown_label_names_it_and_the_known_ones():
    with pytest.raises(DataError) as info:
        LabelSet(("neg", "pos")).encode(["pos", "meh", "angry", "meh"], where="the test split")
    message = str(info.value)
    assert "the test split has label(s) ['angry', 'meh'] that the training split does not have" in message
    assert "(known: ['neg', 'pos'])" in message
    assert "remove those rows or add them to the training data" in message


def test_an_unknown_label_that_is_a_known_one_in_other_case_or_spacing_is_named_so():
    with pytest.raises(DataError) as info:
        LabelSet(("billing", "tech support")).encode(["Billing", "tech  support", "other"], where="the holdout")
    message = str(info.value)
    assert "'Billing' is 'billing' written another way" in message
    assert "'tech  support' is 'tech support' written another way" in message
    assert "'other' is" not in message and "spell them as the training split does" in message


def test_balance_counts_in_id_order_with_zeros():
    balance = LabelSet.fit(["10", "2", "1"]).balance(["10", "10", "1"])
    assert balance == {"1": 1, "2": 0, "10": 2}
    assert list(balance) == ["1", "2", "10"]


def as_list(series: pd.Series) -> list:
    return [None if pd.isna(value) else value for value in series]


@pytest.mark.parametrize(
    "values, expected",
    [
        (pd.Series([True, False, True]), ["True", "False", "True"]),
        (pd.Series([True, False, None], dtype=object), ["True", "False", None]),
        (pd.Series([1, 2, 10]), ["1", "2", "10"]),
        (pd.Series([0.0, 1.0, np.nan, -3.0]), ["0", "1", None, "-3"]),
        (pd.Series([" pos ", "neg\t", None, "\nneutral"]), ["pos", "neg", None, "neutral"]),
        (pd.Series([1, " x ", None, 2.5], dtype=object), ["1", "x", None, "2.5"]),
        (pd.Series([1, 2, None], dtype="Int64"), ["1", "2", None]),
    ],
    ids=["bool", "bool-with-missing", "int", "whole-float", "strings", "mixed-object", "nullable-int"],
)
def test_normalise_makes_stripped_class_names(values, expected):
    assert as_list(normalise(values, "label")) == expected


@pytest.mark.parametrize("values, example", [([0.0, 0.5, 1.0], "0.5"), ([1.0, np.nan, 2.25], "2.25")])
def test_normalise_refuses_fractional_floats(values, example):
    with pytest.raises(DataError) as info:
        normalise(pd.Series(values), "score")
    message = str(info.value)
    assert "label column 'score' holds numbers with fractions" in message
    assert "it does not regress" in message
    assert example in message


def test_normalise_fraction_example_is_a_plain_number():
    with pytest.raises(DataError) as info:
        normalise(pd.Series([0.0, 0.5]), "score")
    assert "(e.g. 0.5)" in str(info.value)


@pytest.mark.parametrize("written", [['["x", "y"]', '["x"]', '["y"]'], ["['x', 'y']", "['x']", "['y']"]])
def test_label_lists_written_as_text_are_lists(written):
    values = pd.Series(written + [None])
    assert is_multi_label(values)
    assert normalise_multi(values, "labels", None).tolist()[:3] == [("x", "y"), ("x",), ("y",)]


def test_a_column_of_names_with_one_bracketed_name_is_not_multi_label():
    assert not is_multi_label(pd.Series(["[x]", "x", "y"]))
    assert not is_multi_label(pd.Series(["[draft", "x]"]))


def test_an_empty_list_written_as_text_is_an_empty_label_list():
    with pytest.raises(DataError, match="empty label list at row 1"):
        normalise_multi(pd.Series(["['x']", "[]"]), "labels", None)


def test_a_label_written_in_two_unicode_forms_is_one_class():
    composed, decomposed = "caf\u00e9", "cafe\u0301"  # the same word: é as one character, or e and an accent
    assert normalise(pd.Series([composed, decomposed, "tea"]), "label").tolist() == [composed, composed, "tea"]
    assert normalise_multi(pd.Series([[decomposed, "tea"]]), "labels", None).tolist() == [(composed, "tea")]


def test_an_infinite_label_among_names_is_refused():
    with pytest.raises(DataError, match="holds inf, not a class"):
        normalise(pd.Series(["spam", float("inf")], dtype=object), "label")


@pytest.mark.parametrize(("values", "expected"), [
    ([[1, 0, 0], [0, 1, 1]], [("0",), ("1", "2")]),  # transformers' multi-label examples
    (["[1.0, 0.0, 0.0]", "[0.0, 1.0, 1.0]"], [("0",), ("1", "2")]),  # the same written by to_csv
    ([np.array([True, False, True]), np.array([False, True, False])], [("0", "2"), ("1",)]),
    ([[0, 1], [1, 1]], [("1",), ("0", "1")]),  # two places: a repeated value says it is no set of labels
])
def test_zero_one_vectors_are_multi_hot_named_by_place(values, expected):
    column = pd.Series(values)
    assert is_multi_label(column)
    assert list(normalise_multi(column, "labels", None)) == expected


def test_a_set_of_labels_0_and_1_is_not_a_vector():
    assert list(normalise_multi(pd.Series([[0, 1], [1]]), "labels", None)) == [("0", "1"), ("1",)]


@pytest.mark.parametrize(("values", "expected"), [
    (["[ 8 20]", "[19]", "[0 13 15]"], [("8", "20"), ("19",), ("0", "13", "15")]),  # datasets' to_csv of arrays
    ([{"sales", "billing"}, {"billing"}], [("billing", "sales"), ("billing",)]),  # Python sets: sorted, every time
])
def test_arrays_printed_by_numpy_and_python_sets_are_label_lists(values, expected):
    column = pd.Series(values)
    assert is_multi_label(column)
    assert list(normalise_multi(column, "labels", None)) == expected


def test_unknown_labels_that_are_known_ones_joined_name_the_separator():
    labels = LabelSet(("anger", "joy", "neutral"))
    with pytest.raises(DataError, match=r"they are known labels joined by ',': pass --label-sep ','"):
        labels.encode_multi([("joy,anger",), ("neutral",)], "the evaluation data")
    with pytest.raises(DataError, match="remove those rows") as caught:
        labels.encode(["fear"])
    assert "--label-sep" not in str(caught.value)


def test_labels_a_saved_model_never_saw_are_told_as_such_not_to_add_them_to_training():
    labels = LabelSet(("billing", "tech"))
    with pytest.raises(DataError) as caught:
        labels.encode(["billing", "Refunds"], "the evaluation data", trained=True)
    message = str(caught.value)
    assert "the evaluation data has label(s) ['Refunds'] that the model was not trained on" in message
    assert "the model can never predict them" in message and "add them to the training data" not in message
