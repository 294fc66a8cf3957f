"""batching: concurrent callers share one running batch and get their own seeded text whatever it
holds; a small request does not wait for a large one's rows; a full worker refuses at once; a caller
that times out or a request that fails leaves the others running.

The batch is driven here one `cycle` at a time, so every count below is of model steps, exact.
"""

import threading
import time
from collections.abc import Callable

import pytest
import torch

from charlm.generation.decoder import Task, generate, task_for
from charlm.model.int8 import Int8Step
from charlm.model.network import CharLM
from charlm.params.generation import SamplingOptions
from charlm.params.serving import LimitsConfig
from charlm.serving.batching import Batcher, Job, Overloaded
from charlm.serving.cost import deadline_s
from tests.helpers import config, small_vocab, tiny_model

VOCAB = small_vocab()


@pytest.fixture(scope="module")
def model() -> CharLM:
    return tiny_model("lstm")


def options(n: int, length: int | None = None) -> SamplingOptions:
    return config(
        SamplingOptions, length=length or 50 + 30 * n, temperature=0.7 + 0.1 * n, top_k=3 + n % 5, seed=n
    )


def limits(**overrides: object) -> LimitsConfig:
    return config(LimitsConfig, **overrides)


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll a condition another thread will make true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
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


def submitted(
    batcher: Batcher, tasks: list[Task], timeout_s: float = 60
) -> tuple[threading.Thread, list[object]]:
    """Submit from another thread (a caller blocks until its texts are done) and wait until the
    submission is queued."""
    rows = batcher.waiting_rows + len(tasks)
    thread, out = in_thread(lambda: batcher.submit(tasks, timeout_s=timeout_s))
    wait_until(lambda: batcher.waiting_rows == rows or bool(out))
    assert not out, f"the submission was not queued: {out}"
    return thread, out


def drain(batcher: Batcher, limit: int = 100_000) -> list[int]:
    """Cycle until every submission is done; the rows in the batch at each step."""
    sizes = []
    while batcher.jobs or not batcher.incoming.empty():
        assert len(sizes) < limit, "the batch never emptied"
        batcher.cycle()
        sizes.append(len(batcher.decoder.rows))
    return sizes


def alone(batcher: Batcher, task: Task, prompt: str) -> str:
    """The text of `task` (whose prompt is `prompt`) generated on its own, stepping as the batcher's worker does."""
    return "".join(generate(batcher.net, VOCAB, prompt, task.options, batcher.net_step))


def test_concurrent_callers_get_what_each_would_get_alone_however_they_are_batched(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(max_batch_rows=4, max_request_batch_rows=2), threaded=False)
    prompts = [("abc", "h"), ("gg",), ("a b", "c\n", "d"), ("e",), ("fa",), ("b",)]
    tasks = [
        [task_for(VOCAB, p, options(n + i)) for i, p in enumerate(group)] for n, group in enumerate(prompts)
    ]
    callers = [submitted(batcher, some) for some in tasks]
    sizes = drain(batcher)
    for (thread, out), some, group in zip(callers, tasks, prompts, strict=True):
        thread.join(timeout=30)
        # Rows that waited for a slot or shared one give the same text as alone.
        assert out == [[alone(batcher, r, p) for r, p in zip(some, group, strict=True)]]
    assert max(sizes) == 4  # the callers' rows really ran together, never beyond the cap
    alone_steps = sum(
        len(p) + r.options.length
        for some, g in zip(tasks, prompts, strict=True)
        for r, p in zip(some, g, strict=True)
    )
    assert len(sizes) < alone_steps / 2  # and shared most of their steps
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0


def test_a_small_request_does_not_wait_for_a_large_ones_rows(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(max_batch_rows=4, max_request_batch_rows=2), threaded=False)
    large = [task_for(VOCAB, "ab", options(n, length=400)) for n in range(8)]
    large_caller, large_out = submitted(batcher, large)
    batcher.cycle()
    assert len(batcher.decoder.rows) == 2  # its share; six rows wait
    small = task_for(VOCAB, "c", options(9, length=40))
    small_caller, small_out = submitted(batcher, [small])
    batcher.cycle()
    (job,) = [job for job in batcher.jobs if job.tasks == [small]]
    steps = 1
    while not job.finished.is_set():
        assert steps < 400, "the small request waited for a large row to finish"
        batcher.cycle()
        steps += 1
    # It joined at the next step and left after its prompt and 40 characters, as if the large
    # request's six waiting rows were not there.
    assert steps == 1 + 40
    small_caller.join(timeout=30)
    assert small_out == [[alone(batcher, small, "c")]]
    assert large_caller.is_alive()
    drain(batcher)
    large_caller.join(timeout=30)
    assert large_out == [[alone(batcher, r, "ab") for r in large]]


def test_a_full_worker_refuses_at_once_and_a_timed_out_caller_leaves(model: CharLM) -> None:
    batcher = Batcher(
        model,
        VOCAB,
        limits(max_batch_rows=2, max_request_batch_rows=2, max_waiting_rows=4, max_request_rows=4),
        threaded=False,
    )
    # Rows that could finish in their second (the batch is not stepped again until they give up).
    endless = [task_for(VOCAB, "a", config(SamplingOptions, length=1000, seed=n)) for n in range(2)]
    running, running_out = submitted(batcher, endless, timeout_s=1)
    batcher.cycle()
    assert len(batcher.decoder.rows) == 2 and batcher.waiting_rows == 0
    queued = [task_for(VOCAB, "b", config(SamplingOptions, length=20, seed=n)) for n in range(4)]
    waiting, waiting_out = submitted(batcher, queued, timeout_s=1)

    full = r"4 rows wait to join its batch \(max_waiting_rows 4\); retry after \d+ s"
    with pytest.raises(Overloaded, match=full) as info:
        batcher.submit([task_for(VOCAB, "c", options(1))], timeout_s=60)
    assert info.value.retry_after_s >= 1

    running.join(timeout=30)
    waiting.join(timeout=30)  # both callers give up at their deadline, the batch untouched since
    assert isinstance(running_out[0], TimeoutError) and isinstance(waiting_out[0], TimeoutError)
    batcher.cycle()
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0  # the abandoned rows are gone
    quick = task_for(VOCAB, "b", options(1))
    caller, out = submitted(batcher, [quick])
    drain(batcher)
    caller.join(timeout=30)
    assert out == [[alone(batcher, quick, "b")]]


def test_work_that_could_not_finish_within_the_timeout_is_refused_at_once(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(), threaded=False)
    caller, _ = submitted(batcher, [task_for(VOCAB, "a", options(1))])
    drain(batcher)  # the speed is measured
    caller.join(timeout=30)
    huge = [task_for(VOCAB, "a", config(SamplingOptions, length=10**8))]
    with pytest.raises(Overloaded, match=r"would take \d+ s, beyond the request timeout of 60 s"):
        batcher.submit(huge, timeout_s=60)
    assert batcher.waiting_rows == 0


def test_admission_counts_on_the_batch_whatever_the_traffic_before(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(), threaded=False)
    caller, _ = submitted(batcher, [task_for(VOCAB, "a", options(1))])
    drain(batcher)  # traffic of one row at a time
    caller.join(timeout=30)
    big = [task_for(VOCAB, "ab", config(SamplingOptions, length=1000, seed=n)) for n in range(32)]
    cost, share = batcher.cost, 8  # the request runs 8 rows at once, its share of the batch
    at_its_share = cost.work_s(32 * 1002, 0, share)
    at_one_row = cost.scale * 32 * 1002 * cost.measured_s(1)  # the speed the last steps ran at
    timeout_s = (at_its_share + at_one_row) / 2
    assert at_its_share < timeout_s < at_one_row
    caller, out = submitted(batcher, big, timeout_s=timeout_s)  # admitted: it fits, batched
    caller.join(timeout=60)  # not run here: its caller gives up at its deadline
    assert isinstance(out[0], TimeoutError)


def test_a_deadline_follows_the_requests_own_size() -> None:
    serve = limits(max_request_batch_rows=2, min_row_chars_per_sec=100)
    one = [task_for(VOCAB, "ab", config(SamplingOptions, length=1000))]
    assert deadline_s(one, serve, timeout_s=60) == pytest.approx(5 + 1002 / 100)
    four = one * 4  # two waves of its share
    assert deadline_s(four, serve, timeout_s=60) == pytest.approx(5 + 2 * 1002 / 100)
    assert deadline_s(four * 10, serve, timeout_s=60) == 60  # never beyond the server's timeout
    long = [task_for(VOCAB, "ab" * 2000, config(SamplingOptions, length=1000))]
    assert deadline_s(long, serve, timeout_s=60) == pytest.approx(5 + 5000 / 100)  # the whole prompt counts


def test_a_request_that_cannot_join_fails_alone(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(), threaded=False)
    long = task_for(VOCAB, "c", config(SamplingOptions, length=3000, seed=2))
    running, result = submitted(batcher, [long])
    batcher.cycle()
    broken = Task(torch.tensor([[len(VOCAB) + 5]]), options(0))  # an id outside the embedding
    told: list[Job] = []
    failed = batcher.enqueue([task_for(VOCAB, "a", options(1)), broken], 60, told.append, each_step=False)
    batcher.cycle()
    batcher.cycle()
    assert isinstance(failed.error, IndexError) and told == [failed]  # told once, when it failed
    with pytest.raises(IndexError):
        failed.take([0, 0])
    drain(batcher)
    running.join(timeout=30)
    assert result == [[alone(batcher, long, "c")]]  # untouched by the failure
    assert batcher.decoder.rows == [] and batcher.waiting_rows == 0


def test_a_submission_of_no_task_is_refused(model: CharLM) -> None:
    with pytest.raises(ValueError, match="at least one task"):
        Batcher(model, VOCAB, limits(), threaded=False).enqueue([], 60)


def test_a_threaded_batcher_serves_callers_on_its_own(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits())
    some = [task_for(VOCAB, "ab", options(n)) for n in range(3)]
    assert batcher.submit(some, timeout_s=60) == [alone(batcher, r, "ab") for r in some]


def test_a_caller_is_told_after_each_step_or_only_at_the_end(model: CharLM) -> None:
    """`on_progress` after every step a job's rows take part in, or with `each_step` off once, when
    the job is done; each job is done the step its last row finishes, the other running on."""
    batcher = Batcher(model, VOCAB, limits(), threaded=False)
    told: dict[str, list[int]] = {"each": [], "end": []}
    steps = 0
    for name, length, each_step in (("each", 20, True), ("end", 10, False)):
        task = task_for(VOCAB, "a", options(1, length=length))  # a prompt of 1: a step, then the text
        batcher.enqueue([task], 60, lambda job, name=name: told[name].append(steps), each_step=each_step)
    while (batcher.jobs or not batcher.incoming.empty()) and steps < 40:
        steps += 1
        batcher.cycle()
    assert told == {"each": list(range(1, 22)), "end": [11]} and not batcher.jobs


def test_a_stream_gives_the_texts_in_pieces_and_a_consumer_that_stops_leaves(model: CharLM) -> None:
    batcher = Batcher(model, VOCAB, limits(), threaded=False)
    some = [task_for(VOCAB, "ab", options(n, length=60)) for n in range(2)]
    pieces: list[list[str]] = []
    consumer = threading.Thread(target=lambda: pieces.extend(batcher.stream(some, timeout_s=60)))
    consumer.start()
    wait_until(lambda: batcher.waiting_rows == 2)
    drain(batcher)
    consumer.join(timeout=30)
    texts = ["".join(piece[i] for piece in pieces) for i in range(2)]
    assert texts == [alone(batcher, r, "ab") for r in some] and len(pieces) > 1  # the same text, in pieces

    endless = [task_for(VOCAB, "a", config(SamplingOptions, length=10_000, seed=1))]
    first: list[list[str]] = []

    def read_one() -> None:
        stream = batcher.stream(endless, timeout_s=60)
        first.append(next(stream))
        stream.close()  # the consumer goes away

    reader = threading.Thread(target=read_one)
    reader.start()
    wait_until(lambda: batcher.waiting_rows == 1)
    for _ in range(10_000):  # steps until its first piece is taken
        batcher.cycle()
        reader.join(timeout=0.001)
        if not reader.is_alive():
            break
    assert first and len(first[0][0]) < 10_000 and batcher.decoder.rows  # still in the batch...
    batcher.cycle()
    assert batcher.decoder.rows == []  # ...until the next step


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_worker_steps_in_the_logged_precision_even_after_a_failed_step(
    model: CharLM, precision: str
) -> None:
    batcher = Batcher(model, VOCAB, limits(precision=precision), threaded=False)
    chosen = batcher.net_step
    assert isinstance(chosen, Int8Step) if precision == "int8" else chosen == model.step
    some = [task_for(VOCAB, "ab", options(n)) for n in range(2)]
    thread, out = submitted(batcher, some)
    batcher.cycle()
    batcher.decoder.rows[0].prompt.append(len(VOCAB) + 5)  # an id outside the embedding, fed two steps on
    for _ in range(2):
        batcher.cycle()
    thread.join(timeout=30)
    assert isinstance(out[0], IndexError) and batcher.decoder.net_step is chosen  # the new decoder's too
    again = [task_for(VOCAB, "ab", options(5))]
    thread, out = submitted(batcher, again)
    drain(batcher)
    thread.join(timeout=30)
    assert out == [[alone(batcher, again[0], "ab")]]
