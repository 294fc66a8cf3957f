"""batching: concurrent callers share one running batch, get their own seeded text, and a caller that
times out or a request that fails leaves the others running."""

import threading
import time

import pytest
import torch

from charlm.generation.decoder import Request, generate, request
from charlm.model.network import CharLM
from charlm.params import SamplingOptions
from charlm.serving.batching import Batcher
from tests.helpers import small_vocab, tiny_model

VOCAB = small_vocab()


@pytest.fixture(scope="module")
def model() -> CharLM:
    return tiny_model("lstm")


def options(n: int) -> SamplingOptions:
    return SamplingOptions(length=50 + 30 * n, temperature=0.7 + 0.1 * n, top_k=3 + n % 5, seed=n)


def test_concurrent_callers_get_what_each_would_get_alone(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB)
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
        assert results[n] == alone
    assert max(batch_sizes) > 3  # the callers' rows really ran together
    alone_steps = sum(
        len(p) + options(n + i).length for n, group in enumerate(prompts) for i, p in enumerate(group)
    )
    assert batcher.steps < alone_steps / 2  # and shared most of their steps
    assert batcher.decoder.rows == []


def test_a_caller_that_times_out_leaves_the_batch(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB)
    endless = request(VOCAB, "a", SamplingOptions(length=10**7, seed=0))
    with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
        batcher.submit([endless], timeout_s=0.2)
    quick = request(VOCAB, "b", options(1))
    assert batcher.submit([quick], timeout_s=60) == ["".join(generate(model, VOCAB, "b", options(1)))]
    assert batcher.decoder.rows == []  # the abandoned row is gone, not still generating


def test_a_request_that_cannot_join_fails_alone(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB)
    long = request(VOCAB, "c", SamplingOptions(length=3000, seed=2))
    result: list[str] = []
    running = threading.Thread(target=lambda: result.extend(batcher.submit([long], timeout_s=60)))
    running.start()
    while not batcher.decoder.rows:
        time.sleep(0.001)
    broken = Request(torch.tensor([[len(VOCAB) + 5]]), options(0))  # an id outside the embedding
    with pytest.raises(IndexError):
        batcher.submit([request(VOCAB, "a", options(1)), broken], timeout_s=60)
    running.join()
    assert result == ["".join(generate(model, VOCAB, "c", long.options))]  # untouched by the failure
    assert batcher.decoder.rows == []
