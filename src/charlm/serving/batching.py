"""Continuous batching with admission control: callers on any thread submit generation requests;
one thread generates.

The batching thread owns a `Decoder` and is the only thread that runs the model. A submission's
rows wait in the worker's queue and join the running batch as slots free up, each leaving when it
has its length, so concurrent callers share every model step. Three rules keep one caller from
stalling the others:

- the batch holds at most `max_batch_rows` rows, so a step costs what a batch of that size costs;
- a submission holds at most `max_request_batch_rows` of them at once, and free slots go to the
  submission with the fewest rows in the batch (the oldest first), so a small request's latency
  does not depend on how many rows a large one brought;
- the queue holds at most `max_waiting_rows` rows, and a submission is refused at once
  (`Overloaded`, with the seconds to wait) when it would overflow it or when the work already
  waiting could not be done within the caller's timeout at the measured speed.

A caller waits until its deadline (`deadline_s`: its own size over a floor speed per row, never
more than the server's timeout); a caller that stops waiting marks its submission abandoned, and the
thread drops its rows at the next step. A submission that cannot join fails alone; an error in a
step fails the submissions in the batch, never the thread.
"""

import collections
import math
import queue
import threading
import time
from dataclasses import dataclass, field

from charlm.data.vocab import Vocabulary
from charlm.generation.decoder import STEPPED_PROMPT_CHARS, Decoder, Request, Row
from charlm.model.network import CharLM
from charlm.params.serve import ServeConfig

DEADLINE_GRACE_S = 5.0  # added to a submission's own generation time, for waiting and HTTP


class Overloaded(Exception):
    """The worker holds all the work it may; the caller should come back after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    """The rows of one submission, which of them wait to join, and how the caller learns they are done."""

    requests: list[Request]
    arrival: int  # among submissions with as many rows in the batch, the oldest joins first
    waiting: collections.deque[int] = field(default_factory=collections.deque)  # request indices
    rows: list[Row | None] = field(default_factory=list)  # by request index, once joined
    finished: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.waiting.extend(range(len(self.requests)))
        self.rows = [None] * len(self.requests)

    @property
    def in_batch(self) -> list[Row]:
        return [row for row in self.rows if row is not None and not row.done]

    @property
    def done(self) -> bool:
        return not self.waiting and all(row is not None and row.done for row in self.rows)

    def complete(self, error: BaseException | None = None) -> None:
        self.error = error
        self.finished.set()


def deadline_s(requests: list[Request], limits: ServeConfig, timeout_s: float) -> float:
    """How long a caller waits: its rows' generation in waves of its batch share, at the floor speed
    per row, plus a grace; never more than the server's timeout."""
    waves = math.ceil(len(requests) / limits.max_request_batch_rows)
    longest = max(r.options.length + min(r.prompt.size(1), STEPPED_PROMPT_CHARS) for r in requests)
    return min(timeout_s, DEADLINE_GRACE_S + waves * longest / limits.min_row_chars_per_sec)


class Batcher:
    def __init__(self, model: CharLM, vocab: Vocabulary, limits: ServeConfig, threaded: bool = True) -> None:
        """`threaded`: a thread of its own runs the batch, started on first use; otherwise the
        caller drives it, one `cycle` at a time (so tests count steps, not seconds)."""
        self.model, self.vocab, self.limits = model, vocab, limits
        self.decoder = Decoder(model, vocab)  # used by the batching thread only
        self.jobs: list[Job] = []  # the submissions the batching thread holds, in arrival order
        self.incoming: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.threaded, self.thread = threaded, None
        self.lock = threading.Lock()  # guards the counts below and starting the thread
        self.waiting_rows = self.waiting_chars = self.arrivals = 0
        self.chars_per_sec = 0.0  # measured generation speed of the whole batch (0: none yet)
        self.steps = 0  # model steps taken: rows that share a step are generated together

    def submit(self, requests: list[Request], timeout_s: float) -> list[str]:
        """Generate the requests' texts (in order) with whatever else is running; blocks.

        Raises Overloaded at once when the worker cannot take them, and TimeoutError after the
        submission's deadline, when its rows have already left the batch.
        """
        chars = sum(r.options.length for r in requests)
        with self.lock:
            if self.threaded and self.thread is None:  # started on first use, in the process that serves
                self.thread = threading.Thread(target=self._run, name="charlm-batching", daemon=True)
                self.thread.start()
            rate = self.chars_per_sec
            backlog_s = (self.waiting_chars + chars) / rate if rate else 0.0
            retry = max(1, math.ceil(self.waiting_chars / rate)) if rate else 1
            if self.waiting_rows + len(requests) > self.limits.max_waiting_rows:
                raise Overloaded(
                    f"the worker is busy: {self.waiting_rows} rows wait to join its batch"
                    f" (max_waiting_rows {self.limits.max_waiting_rows}); retry after {retry} s",
                    retry,
                )
            if backlog_s > timeout_s:
                raise Overloaded(
                    f"the worker is busy: the work waiting for it would take {backlog_s:.0f} s, beyond"
                    f" the request timeout of {timeout_s:g} s; retry after {retry} s",
                    retry,
                )
            self.waiting_rows += len(requests)
            self.waiting_chars += chars
            self.arrivals += 1
            job = Job(list(requests), self.arrivals)
        self.incoming.put(job)
        wait_s = deadline_s(job.requests, self.limits, timeout_s)
        if not job.finished.wait(wait_s):
            job.abandoned = True
            raise TimeoutError(f"generation did not finish within {wait_s:g} s")
        if job.error is not None:
            raise job.error
        return ["".join(row.chars) for row in job.rows if row is not None]

    def _run(self) -> None:
        while True:
            self.cycle(block=True)

    def cycle(self, block: bool = False) -> None:
        """One turn of the batching loop: take what arrived, drop what was abandoned, fill free
        slots, step once, and wake the callers whose rows are done. With `block`, an idle batcher
        waits for work."""
        try:
            if block and not self.jobs:
                self.jobs.append(self.incoming.get())
            while not self.incoming.empty():
                self.jobs.append(self.incoming.get())
            for job in [job for job in self.jobs if job.abandoned]:
                self._leave(job)
            self.jobs = [job for job in self.jobs if not job.abandoned]
            self._fill(self.jobs)
            rows, started = len(self.decoder.rows), time.perf_counter()
            self.decoder.step()
            self._measure(rows, time.perf_counter() - started)
            for job in [job for job in self.jobs if job.done or job.finished.is_set()]:
                self.jobs.remove(job)
                job.complete(job.error)
        except Exception as err:  # a failed step fails the batch; the thread serves on
            for job in self.jobs:
                self._leave(job)
                job.complete(err)
            self.decoder, self.jobs = Decoder(self.model, self.vocab), []

    def _fill(self, jobs: list[Job]) -> None:
        """Give free slots, one row at a time, to the submission with the fewest rows in the batch."""
        share = self.limits.max_request_batch_rows
        counts = {job: len(job.in_batch) for job in jobs}
        while len(self.decoder.rows) < self.limits.max_batch_rows:
            ready = [job for job in jobs if job.waiting and counts[job] < share and not job.finished.is_set()]
            if not ready:
                return
            job = min(ready, key=lambda j: (counts[j], j.arrival))
            index = job.waiting.popleft()
            self._release(1, job.requests[index].options.length)
            try:
                job.rows[index] = self.decoder.add(job.requests[index])
            except Exception as err:  # a submission that cannot join fails alone
                self._leave(job)
                job.error = err
                job.finished.set()
                continue
            counts[job] += 1

    def _leave(self, job: Job) -> None:
        """Take a submission's rows out of the batch and its waiting rows out of the queue."""
        self.decoder.remove({row for row in job.rows if row is not None})
        self._release(len(job.waiting), sum(job.requests[i].options.length for i in job.waiting))
        job.waiting.clear()

    def _release(self, rows: int, chars: int) -> None:
        with self.lock:
            self.waiting_rows -= rows
            self.waiting_chars -= chars

    def _measure(self, rows: int, seconds: float) -> None:
        self.steps += 1
        if rows and seconds > 0:  # a moving average: the speed drifts with the batch and the machine
            rate = rows / seconds
            self.chars_per_sec = rate if not self.chars_per_sec else 0.9 * self.chars_per_sec + 0.1 * rate
