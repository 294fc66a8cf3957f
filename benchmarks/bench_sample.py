"""Sampling throughput: batched generation from params.yaml's lstm architecture, 1 to 128 streams.

Every stream is a row of one `charlm.generation.decoder.Decoder`, sampling included, as the served model runs
them; each row then costs one step of the recurrent cell shared with the others. With
`--processes P`, P processes (one torch thread each, as `charlm serve`'s workers) run each sweep
point at the same moment and the total is printed too: what the machine's cores give together,
the ceiling for a server with P workers. For reference, one stream stepped through `nn.LSTM`
itself (on the CPU, oneDNN's RNN primitive), which `CharLM.step` avoids.
"""

import argparse
import multiprocessing as mp
import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import torch

from charlm.data.vocab import Vocabulary
from charlm.generation.decoder import Decoder, task_for
from charlm.model.network import CharLM
from charlm.params.base import load_params
from charlm.params.generation import SamplingOptions
from charlm.params.pipeline import Params


def sweep(args: argparse.Namespace, start: Barrier | None = None, results: Queue | None = None) -> None:
    """Time every sweep point; with `start`, wait for the other processes before each."""
    vocab = Vocabulary.build("".join(chr(32 + i) for i in range(84)))
    params = load_params(Params, Path(args.params))
    model = CharLM(params.models[args.model].arch, len(vocab)).eval()
    defaults = params.generate.options().model_dump()
    if start is None:
        print(f"{model.config}, {args.length} characters per stream, threads={torch.get_num_threads()}")
    for streams in args.streams:
        decoder = Decoder(model, vocab)
        for seed in range(streams):
            decoder.add(
                task_for(
                    vocab, "ROMEO:", SamplingOptions.parse(defaults | {"length": args.length, "seed": seed})
                )
            )
        if start is not None:
            start.wait()
        begin, steps = time.perf_counter(), 0
        while decoder.rows:  # the prompt's steps, then one per generated character
            decoder.step()
            steps += 1
        elapsed = time.perf_counter() - begin
        if results is not None:
            results.put((streams, streams * args.length / elapsed))
        else:
            print(
                f"{streams:>4} streams: {elapsed / steps * 1e6:7.0f} us/step,"
                f" {streams * args.length / elapsed:9,.0f} chars/s"
            )
    if start is None:
        with torch.no_grad():
            logits, hidden = model(torch.tensor([[1]]))
            begin = time.perf_counter()
            for _ in range(args.length):  # the module's own forward, one character at a time
                probs = torch.softmax(logits[0, -1] / 0.8, -1)
                logits, hidden = model(torch.multinomial(probs, 1).view(1, 1), hidden)
            elapsed = time.perf_counter() - begin
        print(
            f"   1 stream through nn.{type(model.rnn).__name__}: {elapsed / args.length * 1e6:7.0f} us/step"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--length", type=int, default=500, help="characters per stream")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--processes", type=int, default=1, help="processes stepping at once")
    args = parser.parse_args()
    if args.processes == 1:
        sweep(args)
        return

    os.environ["OMP_NUM_THREADS"] = "1"  # read by each process's torch as it starts
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(args.processes), ctx.Queue()
    procs = [ctx.Process(target=sweep, args=(args, start, results)) for _ in range(args.processes)]
    for proc in procs:
        proc.start()
    totals: dict[int, list[float]] = {}
    for _ in range(args.processes * len(args.streams)):
        streams, chars_per_s = results.get()
        totals.setdefault(streams, []).append(chars_per_s)
    for proc in procs:
        proc.join()
    print(f"{args.processes} processes at once, 1 torch thread each, {args.length} characters per stream")
    for streams, each in totals.items():
        print(
            f"{streams:>4} streams per process: {sum(each):9,.0f} chars/s in all"
            f" ({', '.join(f'{x:,.0f}' for x in each)})"
        )


if __name__ == "__main__":
    main()
