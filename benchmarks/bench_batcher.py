"""The batching loop's own cost, without HTTP: the served model's `Batcher`, driven one `cycle` at a
time in this process, with `--rows` one-text requests in the batch and a new one checked and
admitted as each finishes (as the `/invocations` route hands them in), against the ceiling
`bench_serve.py` compares the server with (`decoder_cpu_us_per_char`: the same rows generated
together, one batch after another). CPU time per generated character on one torch thread, as a
worker runs; the two sides take turns, `--seconds` of CPU each per round, since this machine's
speed drifts. What the server spends beyond the batcher's figure is HTTP, JSON and the event loop.
"""

import argparse
import time

import mlflow.pyfunc
import torch
from bench_serve import decoder_cpu_us_per_char

from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.serving.batching import Batcher, Job
from charlm.serving.interface import InputRow
from charlm.serving.pyfunc import CharLMModel
from charlm.tracking.store import connect


def batcher_cpu_us_per_char(served: CharLMModel, rows: int, length: int, seconds: float) -> float:
    """The served model's batch holding `rows` requests of `length` characters after ROMEO:, each
    replaced as it finishes, for `seconds` of CPU time: its CPU microseconds per character."""
    loaded = served.loaded
    batcher = Batcher(loaded.net, loaded.vocab, served.settings.limits, threaded=False)
    made = 0

    def request() -> Job:
        nonlocal made
        made += 1
        row = InputRow.parse({"prompt": "ROMEO:", "length": length, "seed": made})
        return batcher.enqueue(served.tasks([row]), served.timeout_s)

    begin = time.process_time()
    jobs, chars = [request() for _ in range(rows)], 0
    while time.process_time() - begin < seconds:
        batcher.cycle()
        for i, job in enumerate(jobs):
            if job.finished.is_set():
                chars += length
                jobs[i] = request()
    spent = time.process_time() - begin
    chars += sum(len(row.chars) for job in jobs for row in job.rows if row is not None)
    return spent / chars * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=load_params(Params).registry.alias_uri)
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 16], help="requests in the batch at once")
    parser.add_argument("--length", type=int, default=200, help="characters per request")
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    connect()
    served = mlflow.pyfunc.load_model(args.model).unwrap_python_model()
    torch.set_num_threads(1)
    print(f"{served.settings.limits.precision} step, requests of {args.length} characters, one torch thread")
    print(f"{'rows':>4} {'round':>5} {'ceiling us/ch':>13} {'batcher us/ch':>13} {'ratio':>6}")
    for rows in args.rows:
        for r in range(args.rounds):
            ceiling = decoder_cpu_us_per_char(served, rows, args.length, args.seconds)
            batched = batcher_cpu_us_per_char(served, rows, args.length, args.seconds)
            print(
                f"{rows:>4} {r + 1:>5} {ceiling:13.1f} {batched:13.1f} {batched / ceiling:5.2f}x", flush=True
            )


if __name__ == "__main__":
    main()
