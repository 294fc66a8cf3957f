"""batching: concurrent callers share one running batch and get their own seeded text whatever it
holds; a small request does not wait for a large one's rows; a full worker refuses at once; a caller
that times out or a request that fails leaves the others running."""

import threading
import time
from collections.abc import Callable

import pytest
import torch

from charlm.generation.decoder import Request, generate, request
from charlm.model.network import CharLM
from charlm.params import SamplingOptions, ServeConfig
from charlm.serving.batching import Batcher, Overloaded, deadline_s
from tests.helpers import small_vocab, tiny_model

VOCAB = small_vocab()


@pytest.fixture(scope="module")
def model() -> CharLM:
    return tiny_model("lstm")


def options(n: int, length: int | None = None) -> SamplingOptions:
    return SamplingOptions(length=length or 50 + 30 * n, temperature=0.7 + 0.1 * n, top_k=3 + n % 5, seed=n)


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition the batching thread will make true (it cannot hang: the test's timeout ends it)."""
    while not condition():
        time.sleep(0.001)


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as err:
            out.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_concurrent_callers_get_what_each_would_get_alone_however_they_are_batched(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, ServeConfig(max_batch_rows=4, max_request_batch_rows=2))
    prompts = [("abc", "h"), ("gg",), ("a b", "c\n", "d"), ("e",), ("fa",), ("b",)]
    results: dict[int, list[str]] = {}
    batch_sizes: list[int] = []

    def call(n: int) -> None:
        reqs = [request(VOCAB, p, options(n + i)) for i, p in enumerate(prompts[n])]
        results[n] = batcher.submit(reqs, timeout_s=60)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(prompts))]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        batch_sizes.append(len(batcher.decoder.rows))
        time.sleep(0.001)
    for n, group in enumerate(prompts):
        alone = ["".join(generate(model, VOCAB, p, options(n + i))) for i, p in enumerate(group)]
        assert results[n] == alone  # rows that waited for a slot or shared one give the same text
    assert 3 < max(batch_sizes) <= 4  # the callers' rows really ran together, never beyond the cap
    alone_steps = sum(
        len(p) + options(n + i).length for n, group in enumerate(prompts) for i, p in enumerate(group)
    )
    assert batcher.steps < alone_steps / 2  # and shared most of their steps
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0


def test_a_small_request_does_not_wait_for_a_large_ones_rows(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, ServeConfig(max_batch_rows=4, max_request_batch_rows=2))
    large = [request(VOCAB, "ab", options(n, length=400)) for n in range(8)]
    large_thread, large_out = in_thread(lambda: batcher.submit(large, timeout_s=60))
    wait_until(lambda: len(batcher.decoder.rows) == 2)  # its share; six rows wait
    small = request(VOCAB, "c", options(9, length=40))
    before = batcher.steps
    assert batcher.submit([small], timeout_s=60) == ["".join(generate(model, VOCAB, "c", small.options))]
    # It joined at the next step and left after its 41: as if the large request's six waiting rows
    # were not there. In turn after them, it would have waited for a large row to finish (400 steps).
    # (This thread reads the count some steps late: it wakes while the batch runs on.)
    assert batcher.steps - before < 200
    assert large_thread.is_alive()
    large_thread.join()
    assert large_out == [["".join(generate(model, VOCAB, "ab", r.options)) for r in large]]


def test_a_full_worker_refuses_at_once_and_a_timed_out_caller_leaves(model: CharLM) -> None:
    limits = ServeConfig(max_batch_rows=2, max_request_batch_rows=2, max_waiting_rows=4)
    batcher = Batcher(model, VOCAB, limits)
    endless = [request(VOCAB, "a", SamplingOptions(length=10**6, seed=n)) for n in range(2)]
    running, running_out = in_thread(lambda: batcher.submit(endless, timeout_s=1))
    wait_until(lambda: len(batcher.decoder.rows) == 2 and batcher.waiting_rows == 0)
    queued = [request(VOCAB, "b", SamplingOptions(length=20, seed=n)) for n in range(4)]
    waiting, waiting_out = in_thread(lambda: batcher.submit(queued, timeout_s=1))
    wait_until(lambda: batcher.waiting_rows == 4)

    full = r"4 rows wait to join its batch \(max_waiting_rows 4\); retry after \d+ s"
    with pytest.raises(Overloaded, match=full) as info:
        batcher.submit([request(VOCAB, "c", options(1))], timeout_s=60)
    assert info.value.retry_after_s >= 1

    running.join()
    waiting.join()
    assert isinstance(running_out[0], TimeoutError) and isinstance(waiting_out[0], TimeoutError)
    quick = request(VOCAB, "b", options(1))
    assert batcher.submit([quick], timeout_s=60) == ["".join(generate(model, VOCAB, "b", options(1)))]
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0  # the abandoned rows are gone


def test_work_that_could_not_finish_within_the_timeout_is_refused_at_once(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, ServeConfig())
    batcher.submit([request(VOCAB, "a", options(1))], timeout_s=60)  # the speed is measured
    huge = [request(VOCAB, "a", SamplingOptions(length=10**8))]
    with pytest.raises(Overloaded, match=r"would take \d+ s, beyond the request timeout of 60 s"):
        batcher.submit(huge, timeout_s=60)
    assert batcher.waiting_rows == 0


def test_a_deadline_follows_the_requests_own_size() -> None:
    limits = ServeConfig(max_request_batch_rows=2, min_row_chars_per_sec=100)
    one = [request(VOCAB, "ab", SamplingOptions(length=1000))]
    assert deadline_s(one, limits, timeout_s=60) == pytest.approx(5 + 1002 / 100)
    four = one * 4  # two waves of its share
    assert deadline_s(four, limits, timeout_s=60) == pytest.approx(5 + 2 * 1002 / 100)
    assert deadline_s(four * 10, limits, timeout_s=60) == 60  # never beyond the server's timeout


def test_a_request_that_cannot_join_fails_alone(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, ServeConfig())
    long = request(VOCAB, "c", SamplingOptions(length=3000, seed=2))
    running, result = in_thread(lambda: batcher.submit([long], timeout_s=60))
    wait_until(lambda: bool(batcher.decoder.rows))
    broken = Request(torch.tensor([[len(VOCAB) + 5]]), options(0))  # an id outside the embedding
    with pytest.raises(IndexError):
        batcher.submit([request(VOCAB, "a", options(1)), broken], timeout_s=60)
    running.join()
    assert result == [["".join(generate(model, VOCAB, "c", long.options))]]  # untouched by the failure
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0
