"""Splits by class and the leak check (bertfit.data.splits): balance kept, nothing lost or duplicated, leaks refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bertfit.data.splits import check_leaks, stratified_split
from conftest import expect_data_error, labelled

# ---------------------------------------------------------------------------------------------
# stratified_split

FRACTIONS = {"validation": 0.15, "test": 0.15}
UNEVEN = {"big": 60, "mid": 30, "small": 10}


def test_split_fractions_and_class_balance():
    rows = labelled(UNEVEN)
    splits = stratified_split(rows, FRACTIONS, seed=0)
    assert set(splits) == {"train", "validation", "test"}
    total = len(rows)
    for name, fraction in {"train": 0.7, **FRACTIONS}.items():
        assert abs(len(splits[name]) / total - fraction) <= 0.03, (name, len(splits[name]))
        counts = splits[name]["label"].value_counts()
        for label, n in UNEVEN.items():
            assert abs(counts.get(label, 0) - n * fraction) <= 2, (name, label, counts.get(label, 0))
    assert set(splits["train"]["label"]) == set(UNEVEN)


def test_split_loses_and_duplicates_nothing():
    rows = labelled(UNEVEN)
    splits = stratified_split(rows, FRACTIONS, seed=3)
    together = pd.concat(splits.values(), ignore_index=True)
    assert len(together) == len(rows)
    assert sorted(map(tuple, together.to_numpy())) == sorted(map(tuple, rows.to_numpy()))


def test_split_is_deterministic_for_a_seed_and_differs_for_another():
    rows = labelled(UNEVEN)
    first, again = (stratified_split(rows, FRACTIONS, seed=7) for _ in range(2))
    other = stratified_split(rows, FRACTIONS, seed=8)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert set(first["test"]["text"]) != set(other["test"]["text"])


def test_split_keeps_every_class_in_train_even_when_tiny():
    rows = labelled({"a": 2, "b": 3, "c": 50})
    splits = stratified_split(rows, {"validation": 0.45, "test": 0.45}, seed=0)
    assert splits["train"]["label"].value_counts().to_dict().keys() == {"a", "b", "c"}


def test_split_with_only_a_validation_fraction():
    rows = labelled({"a": 20, "b": 20})
    splits = stratified_split(rows, {"validation": 0.25}, seed=0)
    assert set(splits) == {"train", "validation"}
    assert splits["validation"]["label"].value_counts().to_dict() == {"a": 5, "b": 5}


def test_a_class_with_one_row_is_kept_in_training_and_said(caplog):
    rows = labelled({"a": 10, "b": 10, "lonely": 1})
    with caplog.at_level("WARNING", logger="bertfit"):
        splits = stratified_split(rows, FRACTIONS, seed=0)
    assert (splits["train"]["label"] == "lonely").sum() == 1
    assert "lonely" not in set(splits["validation"]["label"]) | set(splits["test"]["label"])
    assert "1 class(es) have a single row" in caplog.text and "never validated or tested" in caplog.text


def test_split_refuses_a_label_column_where_every_class_has_one_row():
    rows = labelled({f"id-{i}": 1 for i in range(8)})
    expect_data_error(lambda: stratified_split(rows, FRACTIONS, seed=0),
                      "every class has a single row (8 classes", "is the label column an id?", "--label-col")


@pytest.mark.parametrize("per_class", [2, 3])
def test_many_classes_of_two_or_three_rows_still_give_each_split_its_share(per_class):
    rows = labelled({f"c{i}": per_class for i in range(100)})  # rounding each class's 15% gives 0 rows
    splits = stratified_split(rows, FRACTIONS, seed=0)
    assert len(splits["validation"]) == len(splits["test"]) == round(100 * per_class * 0.15)
    assert set(splits["train"]["label"]) == set(rows["label"])  # every class still trains
    assert splits["validation"]["label"].is_unique and splits["test"]["label"].is_unique


def test_classes_large_enough_to_round_keep_their_per_class_split():
    rows = labelled({"a": 20, "b": 40})
    splits = stratified_split(rows, FRACTIONS, seed=0)
    assert splits["validation"]["label"].value_counts().to_dict() == {"a": 3, "b": 6}


@pytest.mark.parametrize("case", range(30))
def test_split_invariants_hold_for_random_class_sizes_and_fractions(case):
    rng = np.random.default_rng(case)
    counts = rng.integers(2, 26, size=rng.integers(2, 6))
    validation, test = rng.uniform(0.01, 0.45), rng.uniform(0.01, 0.44)
    rows = labelled({f"c{i}": int(n) for i, n in enumerate(counts)})
    splits = stratified_split(rows, {"validation": validation, "test": test}, seed=case)
    assert set(splits["train"]["label"]) == set(rows["label"])
    together = pd.concat(splits.values())
    assert sorted(together["text"]) == sorted(rows["text"])


# ---------------------------------------------------------------------------------------------
# check_leaks


def leaky_splits() -> dict[str, pd.DataFrame]:
    def part(*texts: str) -> pd.DataFrame:
        return pd.DataFrame({"text": list(texts), "label": ["x"] * len(texts)})

    return {
        "train": part("Hello World", "a"),
        "validation": part("hello   world", "b", "only in val and test"),
        "test": part("HELLO\tWORLD", "A", "c", "Only In Val  And Test"),
    }


def test_leaks_are_an_error_with_counts_and_the_flag():
    expect_data_error(lambda: check_leaks(leaky_splits(), drop=False),
                      "4 text(s) appear in more than one split", "1 in validation", "3 in test", "--drop-leaks")


def test_drop_leaks_removes_them_from_validation_and_test_only():
    splits = leaky_splits()
    removed = check_leaks(splits, drop=True)
    assert removed == {"validation": 1, "test": 3}
    assert list(splits["train"]["text"]) == ["Hello World", "a"]
    assert list(splits["validation"]["text"]) == ["b", "only in val and test"]
    assert list(splits["test"]["text"]) == ["c"]
    assert list(splits["test"].index) == [0]


def test_no_leaks_returns_zeros():
    splits = {name: labelled({"a": 3, "b": 3}, prefix=name) for name in ("train", "validation", "test")}
    assert check_leaks(splits, drop=False) == {"validation": 0, "test": 0}
