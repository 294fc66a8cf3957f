"""The served step in fp32, bf16 and int8 (`limits.precision`), all in this process, on one torch thread
as each `charlm serve` worker runs (docs/benchmarks.md#the-served-step-in-int8):

- speed: the model's one-character step at 1 to 64 rows, the precisions interleaved over `--rounds`
  rounds and the median taken; then the decoder's whole step (sampling included) per character;
- quality: the validation split scored through each precision's step, one character at a time over
  the evaluate stage's streams (state carried), beside the stage's own figure; and the texts each
  writes after the `evaluate.writing` prompts, read by the writing judge.

bf16 casts the whole model (CPUs with native bf16 only: elsewhere it is emulated and slow); it is
measured, not offered. Run after `make run`, in the project:

    python benchmarks/bench_precision.py --model lstm
"""

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from charlm.data.encoded import EncodedSplits
from charlm.data.streams import Streams
from charlm.data.vocab import Vocabulary
from charlm.evaluation.report import EvalReport
from charlm.evaluation.writing import judge
from charlm.generation.decoder import Decoder, task_for
from charlm.model.directory import load_model_dir
from charlm.model.int8 import Int8Step
from charlm.model.network import CharLM, Hidden, Step, hidden_from_tensors, hidden_tensors
from charlm.params.base import load_params
from charlm.params.generation import SamplingOptions
from charlm.params.pipeline import Params

PRECISIONS = ("fp32", "bf16", "int8")


def steps(net: CharLM) -> dict[str, tuple[Step, torch.dtype]]:
    """Each precision's step and the dtype of the state it carries."""
    bf16 = copy.deepcopy(net).to(torch.bfloat16)
    return {
        "fp32": (net.step, torch.float32),
        "bf16": (bf16.step, torch.bfloat16),
        "int8": (Int8Step(net), torch.float32),
    }


def zeros(net: CharLM, rows: int, dtype: torch.dtype) -> Hidden:
    """The state before the first character, in `dtype`."""
    return hidden_from_tensors([h.to(dtype) for h in hidden_tensors(net.initial_hidden(rows))])


def timed_steps(net: CharLM, rows: list[int], rounds: int) -> dict[tuple[str, int], float]:
    """Median microseconds per step of each (precision, rows), interleaved."""
    each = steps(net)
    times: dict[tuple[str, int], list[float]] = {}
    with torch.inference_mode():
        for _ in range(rounds):
            for b in rows:
                ids = torch.randint(1, net.vocab_size, (b,))
                for name, (step, dtype) in each.items():
                    hidden = zeros(net, b, dtype)
                    for _ in range(10):  # warm-up
                        step(ids, hidden)
                    started = time.perf_counter()
                    for _ in range(100):
                        step(ids, hidden)
                    times.setdefault((name, b), []).append((time.perf_counter() - started) / 100 * 1e6)
    return {key: statistics.median(values) for key, values in times.items()}


def scored(step: Step, dtype: torch.dtype, net: CharLM, ids: np.ndarray, batch_size: int) -> float:
    """Bits per character of every target of `ids` in `batch_size` streams, one step at a time."""
    data = Streams(ids, batch_size)
    hidden, nats = zeros(net, data.ids.shape[0], dtype), torch.zeros((), dtype=torch.float64)
    with torch.inference_mode():
        window = data.chunk(0, data.length, torch.device("cpu"))  # (B, L)
        for t in range(data.length - 1):
            scores, hidden = step(window[:, t], hidden)
            log_probs = scores.float().log_softmax(-1)  # (B, V)
            nats -= log_probs.gather(1, window[:, t + 1, None]).sum().double()
    return nats.item() / (data.ids.shape[0] * (data.length - 1)) / math.log(2)


def decoder_us_per_char(
    net: CharLM, vocab: Vocabulary, precision: str, rows: int, options: SamplingOptions
) -> float:
    """The decoder's whole step (sampling included) per generated character, `rows` rows after ROMEO:."""
    decoder = Decoder(net, vocab, Int8Step(net) if precision == "int8" else None)
    made = [
        decoder.add(task_for(vocab, "ROMEO:", options.model_copy(update={"seed": n}))) for n in range(rows)
    ]
    started = time.perf_counter()
    while decoder.rows:
        decoder.step()
    return (time.perf_counter() - started) / sum(len(row.chars) for row in made) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml, trained")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params(Params)
    model_dir = Path(params.paths["models"]) / args.model
    loaded = load_model_dir(model_dir)
    net, vocab = loaded.net.eval(), loaded.vocab
    print(f"{model_dir}: {net.config.cell}, {net.num_parameters():,} parameters, {len(vocab)} characters")

    times = timed_steps(net, args.rows, args.rounds)
    print(f"the model's step, us (median of {args.rounds} rounds of 100), and its speed-up over fp32:")
    for b in args.rows:
        cells = "  ".join(
            f"{p} {times[p, b]:7.0f} ({times['fp32', b] / times[p, b]:.2f}x)" for p in PRECISIONS
        )
        print(f"  {b:3d} rows: {cells}")
    options = params.generate.options().model_copy(update={"length": 300})
    for rows in (16, 64):
        runs: dict[str, list[float]] = {p: [] for p in ("fp32", "int8")}
        for _ in range(3):  # alternating; the fastest of each
            for p in runs:
                runs[p].append(decoder_us_per_char(net, vocab, p, rows, options))
        us = {p: min(values) for p, values in runs.items()}
        print(
            f"the decoder's whole step, {rows} rows: fp32 {us['fp32']:.1f} us/char, int8 {us['int8']:.1f} ({us['fp32'] / us['int8']:.2f}x)"
        )

    encoded = EncodedSplits(Path(params.paths["encoded"]))
    val = encoded.load("val")
    stage = EvalReport.read(Path(params.paths["metrics"]) / "eval" / f"{args.model}.json").val.bpc
    print(
        f"val bpc, one step at a time over {params.evaluate.batch_size} streams (the evaluate stage: {stage:.4f}):"
    )
    figures = {}
    for name, (step, dtype) in steps(net).items():
        figures[name] = scored(step, dtype, net, val, params.evaluate.batch_size)
        print(f"  {name}: {figures[name]:.4f} ({figures[name] - figures['fp32']:+.4f} against fp32)")

    cfg = params.evaluate.writing
    wanted = cfg.options(params.generate)
    train = encoded.load("train")
    for precision in ("fp32", "int8"):
        decoder = Decoder(net, vocab, Int8Step(net) if precision == "int8" else None)
        rows = [decoder.add(task_for(vocab, prompt, o)) for prompt, o in wanted]
        while decoder.rows:
            decoder.step()
        texts = ["".join(row.chars) for row in rows]
        report = judge(train, val, vocab, cfg, wanted, texts)
        print(f"writing, {precision}: {report.headline()}")
        if precision == "int8":
            print(f"  after {wanted[0][0]!r}: {wanted[0][0] + texts[0][:200]!r}")


if __name__ == "__main__":
    main()
