"""Output layers over a corpus of thousands of symbols: the full softmax against adaptive heads, all in
this process (docs/benchmarks.md#output-layers-over-a-large-vocabulary).

The corpus is a local UTF-8 file: its first 90% trains and the rest is held out; with `--tune`, the
held-out text is not read, the first 90% of the training text trains and the rest of it scores, so
heads are chosen without the text that reports them. Every head runs params.yaml's `lstm` recipe
with its `model.head_cutoffs` (`[]`: the full softmax) and the `--set` overrides:

- the step: milliseconds per training step (the Trainer's own `train_step`), the heads interleaved
  over `--rounds` rounds and the median taken, so drift in the machine's speed hits each alike;
- with `--budget`: quality at equal time, each head and seed trained under `train.max_time_s`
  (validation included) and its exported weights scored as the evaluate stage scores them
  (stateful, bits per character); `--steps` trains a fixed number of steps instead.

    python benchmarks/bench_head.py --corpus tang.txt --heads "[]" "[1024, 4096]" --budget 300 --seeds 1 2 3
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_seeds import overrides, spread, trained
from bench_step import timed

from charlm.data.vocab import Vocabulary
from charlm.evaluation.evaluate import evaluate
from charlm.model.device import autocast_dtype, select_device
from charlm.model.heads import describe
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.params.training import ModelSpec
from charlm.training.state import TrainData
from charlm.training.trainer import Trainer

TRAIN_FRACTION = 0.9


def split(text: str, tune: bool) -> tuple[str, str]:
    """Training text and the text that scores it, cut at line ends."""
    cut = text.rfind("\n", 0, int(len(text) * TRAIN_FRACTION)) + 1
    if tune:
        text = text[:cut]
        cut = text.rfind("\n", 0, int(len(text) * TRAIN_FRACTION)) + 1
    return text[:cut], text[cut:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, required=True, help="a UTF-8 text file")
    parser.add_argument("--heads", nargs="+", default=["[]", "[1024, 4096]"], help="values of head_cutoffs")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the lstm recipe"
    )
    parser.add_argument("--min-count", type=int, help="vocab.min_count (default: params.yaml's)")
    parser.add_argument("--steps-timed", type=int, default=10, help="timed steps per head per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, help="training seconds per head and seed")
    parser.add_argument("--steps", type=int, help="training steps per head and seed, instead of a budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--tune", action="store_true", help="score on the end of the training text")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(Params, Path(args.params))
    train, held_out = split(args.corpus.read_text(encoding="utf-8"), args.tune)
    min_count = params.vocab.min_count if args.min_count is None else args.min_count
    vocab = Vocabulary.build(train, min_count)
    data = TrainData(vocab.encode(train), vocab.encode(held_out), vocab, {"train": "train", "val": "scored"})
    unknown = float(np.mean(data.val == 0))
    base = params.models["lstm"].model_dump() | overrides(args.set)
    specs = {head: ModelSpec.parse(base | {"head_cutoffs": yaml.safe_load(head)}) for head in args.heads}
    device = select_device(params.models["lstm"].train.device)
    dtype = autocast_dtype(params.models["lstm"].train.precision, device)
    print(
        f"{args.corpus}: train {len(train):,} chars, {'validation' if args.tune else 'held out'}"
        f" {len(held_out):,} ({unknown:.3%} <unk>); vocabulary {len(vocab):,} (min_count {min_count});"
        f" device={device} precision={'bf16' if dtype else 'fp32'} threads={torch.get_num_threads()}"
    )
    print(f"lstm recipe with {overrides(args.set) or 'its settings'}")

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            head: Trainer(spec, data, Path(tmp) / str(i)) for i, (head, spec) in enumerate(specs.items())
        }
        seconds: dict[str, list[float]] = {head: [] for head in specs}
        for trainer in trainers.values():
            timed(trainer.train_step, 0, 2)  # warm up
        for r in range(args.rounds):
            for head, trainer in trainers.items():
                seconds[head].append(timed(trainer.train_step, 2 + r * args.steps_timed, args.steps_timed)[0])
    first = statistics.median(seconds[args.heads[0]])
    cfg = params.models["lstm"].train
    print(
        f"{'head_cutoffs':16} {'ms/step':>8} {'spread':>13} {'speed':>7} {'chars/s':>8} {'params':>10}  layer"
    )
    for head, spec in specs.items():
        mid = statistics.median(seconds[head])
        model = trainers[head].net
        print(
            f"{head:16} {mid * 1e3:8.1f} {min(seconds[head]) * 1e3:6.1f}-{max(seconds[head]) * 1e3:<6.1f}"
            f" {first / mid:6.2f}x {cfg.batch_size * cfg.seq_len / mid:8,.0f} {model.num_parameters():10,}"
            f"  {describe(spec.arch.head_cutoffs, len(vocab))}",
            flush=True,
        )

    if args.budget is None and args.steps is None:
        return
    ends = (
        {"max_time_s": args.budget, "max_steps": 10**9} if args.steps is None else {"max_steps": args.steps}
    )
    scores: dict[str, list[float]] = {head: [] for head in specs}
    for seed in args.seeds:
        for head, spec in specs.items():
            run = trained(ModelSpec.parse(spec.model_dump() | ends | {"seed": seed}), data)
            bpc = evaluate(
                run.net, data.val, params.evaluate.batch_size, params.evaluate.seq_len, device, dtype
            ).bpc
            scores[head].append(bpc)
            print(
                f"seed {seed} head_cutoffs {head}: {run.loop.steps:,} steps in {run.seconds:.0f} s:"
                f" {bpc:.4f} bpc",
                flush=True,
            )
    for head, figures in scores.items():
        print(spread(f"head_cutoffs {head}: ", figures))


if __name__ == "__main__":
    main()
