"""bertfit's Trainer rows and batch order (bertfit.trainer): nothing dropped, nothing mislabelled."""

from __future__ import annotations

import numpy as np

from bertfit.trainer import EncodedSplit, LengthBuckets


def test_sorted_by_length_keeps_each_text_with_its_label():
    ids = [[1, 5, 6, 2], [1, 2], [1, 7, 2], [1, 8, 2]]
    split = EncodedSplit({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]}, np.array([0, 1, 2, 3]))
    ordered = split.sorted_by_length()
    assert [len(ordered[i]["input_ids"]) for i in range(4)] == [2, 3, 3, 4]
    assert sorted((tuple(ordered[i]["input_ids"]), ordered[i]["labels"]) for i in range(4)) == \
        sorted((tuple(split[i]["input_ids"]), split[i]["labels"]) for i in range(4))
    assert [ordered[i]["labels"] for i in range(4)] == [1, 2, 3, 0]  # stable: equal lengths keep their order


def test_length_buckets_yield_every_row_once_in_batches_of_similar_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=1000).tolist()
    sampler = LengthBuckets(lengths, batch_size=16, seed=1, pool_batches=8)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(1000)) and sorted(second) == list(range(1000))
    assert first != second  # a new order every epoch
    assert list(LengthBuckets(lengths, 16, seed=1, pool_batches=8)) == first  # the same seed, the same order
    spread = [np.ptp([lengths[i] for i in first[s:s + 16]]) for s in range(0, 1000, 16)]
    random_spread = [np.ptp([lengths[i] for i in rng.permutation(1000)[:16]]) for _ in range(20)]
    assert np.median(spread) < np.median(random_spread) / 4  # far less padding than random batches
