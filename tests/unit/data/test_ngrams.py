"""ngrams: runs of n ids counted a block at a time are the runs the whole stream holds, kept as the
runs that occur: memory follows them, not V^n, on a vocabulary of every code point."""

import tracemalloc
from collections import Counter

import numpy as np
import pytest

from charlm.data import ngrams
from charlm.data.ngrams import NgramCounts, Runs


def by_hand(ids: list[int], n: int) -> Counter[tuple[int, ...]]:
    return Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))


def as_runs(runs: Runs, n: int, vocab_size: int) -> Counter[tuple[int, ...]]:
    """The runs, decoded from their codes (base V digits, the first the most significant)."""
    decoded = Counter()
    for code, count in zip(runs.codes.tolist(), runs.counts.tolist(), strict=True):
        digits = [(code // vocab_size**k) % vocab_size for k in range(n - 1, -1, -1)]
        decoded[tuple(digits)] = count
    return decoded


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 50])
def test_runs_are_the_streams_whether_counted_densely_or_not(
    monkeypatch: pytest.MonkeyPatch, dense: bool, length: int
) -> None:
    monkeypatch.setattr(ngrams, "BLOCK", 7)  # runs cross the blocks they are counted in
    monkeypatch.setattr(ngrams, "DENSE_ENTRIES", 1 << 20 if dense else 0)
    ids = np.random.default_rng(length).integers(0, 6, size=length).tolist()
    counts = NgramCounts(6, 3)
    for start in range(0, length, 11):  # the caller's chunks, another size again
        counts.add(np.array(ids[start : start + 11], dtype=np.uint8))
    assert (counts.dense is not None) == dense
    for n in (1, 2, 3):
        runs = counts.runs(n)
        assert (np.diff(runs.codes) > 0).all(), "sorted and distinct"
        assert as_runs(runs, n, 6) == by_hand(ids, n), n
    assert counts.unigram().tolist() == [ids.count(i) for i in range(6)]
    assert counts.total == length and counts.head.tolist() == ids[:2]


def test_count_looks_runs_up_and_finds_none_where_none_occurs() -> None:
    runs = Runs.grouped(np.array([7, 3, 7, 9]), np.array([1, 2, 3, 1]))
    assert runs.codes.tolist() == [3, 7, 9] and runs.counts.tolist() == [2, 4, 1]
    assert runs.count(np.array([9, 0, 7, 10, 3])).tolist() == [1, 0, 4, 0, 2]
    assert Runs.grouped(np.empty(0), np.empty(0)).count(np.array([1])).tolist() == [0]


def test_memory_follows_the_runs_that_occur_not_the_possible_ones() -> None:
    every_code_point = 0x110001  # the largest vocabulary: V^2 would be 10 TB, V^3 has no int64
    ids = np.random.default_rng(0).zipf(1.3, size=300_000) % every_code_point
    tracemalloc.start()
    counts = NgramCounts.of(ids, every_code_point, 3)
    pairs = counts.runs(2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert counts.dense is None
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB for {len(ids):,} ids"
    assert pairs.counts.sum() == len(ids) - 1


def test_an_order_whose_runs_have_no_code_is_refused() -> None:
    assert ngrams.codes_fit(0x110001, 3) and not ngrams.codes_fit(9202, 5)
    with pytest.raises(ValueError, match="runs of 5 over 9202 symbols have no int64 code"):
        NgramCounts(9202, 5)
