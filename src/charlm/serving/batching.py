"""Continuous batching: callers on any thread submit generation requests; one thread generates.

The batching thread owns a `Decoder` and is the only thread that runs the model. Requests that
arrive while others are generating join the running batch before its next step, and each row
leaves when it has its length, so concurrent callers share every model step. A caller that stops
waiting (its timeout) marks its job abandoned and the thread drops its rows at the next step. A job
that cannot join fails alone; an error in a step fails the jobs in the batch, never the thread.
"""

import queue
import threading
from dataclasses import dataclass, field

from charlm.data.vocab import Vocabulary
from charlm.generation.decoder import Decoder, Request, Row
from charlm.model.network import CharLM


@dataclass(eq=False)
class Job:
    """The rows of one submission, and how the caller learns they are done."""

    requests: list[Request]
    rows: list[Row] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    error: BaseException | None = None

    def complete(self, error: BaseException | None = None) -> None:
        self.error = error
        self.finished.set()


class Batcher:
    def __init__(self, model: CharLM, vocab: Vocabulary) -> None:
        self.model = model
        self.vocab = vocab
        self.decoder = Decoder(model, vocab)  # used by the batching thread only
        self.incoming: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        self.steps = 0  # model steps taken: rows that share a step are generated together

    def submit(self, requests: list[Request], timeout_s: float) -> list[str]:
        """Generate the requests' texts (in order) with whatever else is running; blocks.

        Raises TimeoutError after `timeout_s`, when the rows have already left the batch.
        """
        with self.start_lock:  # started on first use, in the process that serves
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="charlm-batching", daemon=True)
                self.thread.start()
        job = Job(list(requests))
        self.incoming.put(job)
        if not job.finished.wait(timeout_s):
            job.abandoned = True
            raise TimeoutError(f"generation did not finish within {timeout_s:g} s")
        if job.error is not None:
            raise job.error
        return ["".join(row.chars) for row in job.rows]

    def _run(self) -> None:
        jobs: list[Job] = []
        while True:
            try:
                # Block while idle; otherwise take whatever arrived during the last step.
                arrived = [self.incoming.get()] if not jobs else []
                while not self.incoming.empty():
                    arrived.append(self.incoming.get())
                jobs += [job for job in arrived if self._admit(job)]
                gone = [job for job in jobs if job.abandoned]
                self.decoder.remove({row for job in gone for row in job.rows})
                jobs = [job for job in jobs if not job.abandoned]
                self.decoder.step()
                self.steps += 1
                for job in [job for job in jobs if all(row.done for row in job.rows)]:
                    jobs.remove(job)
                    job.complete()
            except Exception as err:  # a failed step fails the batch; the thread serves on
                for job in jobs:
                    job.complete(err)
                self.decoder, jobs = Decoder(self.model, self.vocab), []

    def _admit(self, job: Job) -> bool:
        """Add a job's rows to the batch; a job that cannot join fails alone."""
        if job.abandoned:
            return False
        try:
            for req in job.requests:
                job.rows.append(self.decoder.add(req))
        except Exception as err:
            self.decoder.remove(set(job.rows))
            job.complete(err)
            return False
        return True
