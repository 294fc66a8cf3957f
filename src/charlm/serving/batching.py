"""Continuous batching with admission control: callers on any thread submit a request's tasks,
and one thread, the only one that runs the model, steps their rows together in a `Decoder`, within
the served model's limits (the batch's size, a request's share of it, the queue, the deadlines)."""

import collections
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from charlm.data.vocab import Vocabulary
from charlm.generation.decoder import PROMPT_SLICE, Decoder, Row, Task
from charlm.model.int8 import Int8Step
from charlm.model.network import CharLM
from charlm.params.serving import LimitsConfig
from charlm.serving.cost import StepCost, deadline_s, work


class Overloaded(Exception):
    """The worker holds all the work it may; the caller should come back after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class Job:
    """The rows of one submission, which of them wait to join, and how the caller learns they
    advanced (`on_progress`, called by the batching thread after each step they took part in,
    unless `each_step` is off, and when they are done) and that they are done."""

    tasks: list[Task]
    deadline: float  # time.monotonic() after which its caller has given up
    on_progress: "Callable[[Job], object] | None" = None
    each_step: bool = True  # off: `on_progress` only when done (a caller that waits for the end)
    waiting: collections.deque[int] = field(default_factory=collections.deque)  # task indices
    rows: list[Row | None] = field(default_factory=list)  # by task index, once joined
    finished: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.waiting.extend(range(len(self.tasks)))
        self.rows = [None] * len(self.tasks)

    @property
    def in_batch(self) -> list[Row]:
        return [row for row in self.rows if row is not None and not row.done]

    @property
    def done(self) -> bool:
        return not self.waiting and all(row is not None and row.done for row in self.rows)

    def complete(self, error: BaseException | None = None) -> None:
        self.error = error
        self.finished.set()
        self.notify()

    def notify(self) -> None:
        """Tell the caller its rows advanced; a caller that cannot be told (gone) is abandoned."""
        if self.on_progress is not None:
            try:
                self.on_progress(self)
            except Exception:
                self.abandoned = True

    def remaining_s(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def give_up(self) -> TimeoutError:
        """Its caller stops waiting, past the deadline: its rows leave the batch at the next step."""
        self.abandoned = True
        return TimeoutError("generation did not finish within its deadline")

    def take(self, sent: list[int]) -> tuple[list[str], bool]:
        """Every row's characters since `sent` (which it moves on) and whether the job is over;
        raises the job's error when it failed. A row's characters only grow, so this may run beside
        the batching thread."""
        over = self.finished.is_set()  # before the characters: none comes after it is set
        news = []
        for i, row in enumerate(self.rows):
            chars = row.chars[sent[i] :] if row is not None else []
            sent[i] += len(chars)
            news.append("".join(chars))
        if over and self.error is not None:
            raise self.error
        return news, over


class Batcher:
    def __init__(self, net: CharLM, vocab: Vocabulary, limits: LimitsConfig, threaded: bool = True) -> None:
        """`threaded`: a thread of its own runs the batch, started on first use; otherwise the
        caller drives it, one `cycle` at a time (so tests count steps, not seconds)."""
        self.net, self.vocab, self.limits = net, vocab, limits
        self.net_step = Int8Step(net) if limits.precision == "int8" else net.step
        self.decoder = Decoder(net, vocab, self.net_step)  # used by the batching thread only
        self.cost = StepCost.measure(self.decoder, limits.max_batch_rows)
        self.jobs: list[Job] = []  # the submissions the batching thread holds, in arrival order
        self.incoming: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.threaded, self.thread = threaded, None
        self.lock = threading.Lock()  # guards the counts below and starting the thread
        self.waiting_rows = self.waiting_chars = self.waiting_sliced = 0

    def submit(self, tasks: list[Task], timeout_s: float) -> list[str]:
        """Generate the tasks' texts (in order) with whatever else is running; blocks. Raises
        Overloaded at once when the worker cannot take them, and TimeoutError after the
        submission's deadline, when its rows have already left the batch."""
        job = self.enqueue(tasks, timeout_s)
        if not job.finished.wait(job.remaining_s()):
            raise job.give_up()
        return job.take([0] * len(tasks))[0]

    def stream(self, tasks: list[Task], timeout_s: float) -> Iterator[list[str]]:
        """The tasks' texts as they are generated: each item holds every row's new characters
        (some maybe empty). Raises as `submit` does; a consumer that stops leaves the batch."""
        woken = threading.Event()
        job = self.enqueue(tasks, timeout_s, lambda _: woken.set())
        sent = [0] * len(tasks)
        try:
            while True:
                if not woken.wait(job.remaining_s()):
                    raise job.give_up()
                woken.clear()
                news, over = job.take(sent)
                if any(news):
                    yield news
                if over:
                    return
        finally:
            job.abandoned = not job.finished.is_set()

    def enqueue(
        self,
        tasks: list[Task],
        timeout_s: float,
        on_progress: Callable[[Job], object] | None = None,
        each_step: bool = True,
    ) -> Job:
        """Admit a submission, which its caller waits for until `timeout_s` at most, and queue it
        for the batch (`Job` says when `on_progress` is called); Overloaded at once when the
        worker cannot take it."""
        if not tasks:
            raise ValueError("a submission holds at least one task")
        chars, sliced = work(tasks)
        # The work ahead of it runs a full batch; its own rows run at most its share at once.
        rows, share = self.limits.max_batch_rows, min(len(tasks), self.limits.max_request_batch_rows)
        with self.lock:
            if self.threaded and self.thread is None:  # started on first use, in the process that serves
                self.thread = threading.Thread(target=self._run, name="charlm-batching", daemon=True)
                self.thread.start()
            waiting_s = self.cost.work_s(self.waiting_chars, self.waiting_sliced, rows)
            backlog_s = waiting_s + self.cost.work_s(chars, sliced, share)
            retry = max(1, math.ceil(waiting_s))
            if self.waiting_rows + len(tasks) > self.limits.max_waiting_rows:
                raise Overloaded(
                    f"the worker is busy: {self.waiting_rows} rows wait to join its batch"
                    f" (max_waiting_rows {self.limits.max_waiting_rows}); retry after {retry} s",
                    retry,
                )
            if backlog_s > timeout_s:
                raise Overloaded(
                    f"the worker is busy: the request, after the work waiting for it, would take"
                    f" {backlog_s:.0f} s, beyond the request timeout of {timeout_s:g} s; retry after {retry} s",
                    retry,
                )
            self.waiting_rows += len(tasks)
            self.waiting_chars += chars
            self.waiting_sliced += sliced
            deadline = time.monotonic() + deadline_s(tasks, self.limits, timeout_s)
            job = Job(list(tasks), deadline, on_progress, each_step)
        self.incoming.put(job)
        return job

    def _run(self) -> None:
        while True:
            self.cycle(block=True)

    def cycle(self, block: bool = False) -> None:
        """One turn of the batching loop: take what arrived, drop what was abandoned, fill free slots, step
        once, and wake the callers whose rows are done. With `block`, an idle batcher waits for work."""
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
            sliced = PROMPT_SLICE if any(row.slicing for row in self.decoder.rows) else 0
            self.decoder.step()
            self.cost.observe(rows, sliced, time.perf_counter() - started)
            # A job is done only when a step finishes its last row (or `_fill` failed it): each
            # job is looked over only after a step some row left, since this runs every step.
            left = len(self.decoder.rows) < rows
            for job in [job for job in self.jobs if job.error is not None or (left and job.done)]:
                self.jobs.remove(job)
                job.complete(job.error)
            for job in self.jobs:
                if job.each_step and job.on_progress is not None and job.in_batch:
                    job.notify()
        except Exception as err:  # a failed step fails the batch; the thread serves on
            for job in self.jobs:
                self._leave(job)
                job.complete(err)
            self.decoder, self.jobs = Decoder(self.net, self.vocab, self.net_step), []

    def _fill(self, jobs: list[Job]) -> None:
        """Give free slots, one row at a time, to the submission with the fewest rows in the batch."""
        if len(self.decoder.rows) >= self.limits.max_batch_rows or not any(job.waiting for job in jobs):
            return  # the common case, every step
        share = self.limits.max_request_batch_rows
        counts = {job: len(job.in_batch) for job in jobs}
        while len(self.decoder.rows) < self.limits.max_batch_rows:
            ready = [job for job in jobs if job.waiting and counts[job] < share]  # a failed job waits no more
            if not ready:
                return
            job = min(ready, key=counts.__getitem__)  # the first of the fewest: the oldest
            index = job.waiting.popleft()
            self._release([job.tasks[index]])
            try:
                job.rows[index] = self.decoder.add(job.tasks[index])
            except Exception as err:  # a submission that cannot join fails alone, completed by `cycle`
                job.error = err
                self._leave(job)
                continue
            counts[job] += 1

    def _leave(self, job: Job) -> None:
        self.decoder.remove({row for row in job.rows if row is not None})
        self._release([job.tasks[i] for i in job.waiting])
        job.waiting.clear()

    def _release(self, tasks: list[Task]) -> None:
        """The tasks leave the queue (joined the batch, or abandoned)."""
        chars, sliced = work(tasks)
        with self.lock:
            self.waiting_rows -= len(tasks)
            self.waiting_chars -= chars
            self.waiting_sliced -= sliced
