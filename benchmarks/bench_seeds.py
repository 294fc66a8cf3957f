"""Training noise: a model of params.yaml trained with several training seeds, each scored as the
evaluate stage scores it, so that a difference between two settings can be set against the spread
of one.

Each seed trains with the train stage's own `Trainer` on the pipeline's encoded splits (run `make
run` first), with the model's settings (its step budget included) and `--set` overrides (as
`dvc exp run -S ++models.<model>.<key>=<value>` would set them); only `train.seed` differs between
the runs of one call. Each trained model is scored by a full stateful pass over the validation
split in params.yaml's `evaluate` layout, and what it writes is judged as the evaluate stage judges
it (`evaluate.writing`). Prints every seed's validation bpc, training time and writing verdict,
then the mean, the standard deviation and the spread (max - min) of the bpc. With
`train.average_last`, each seed's last-step weights are scored too: the same run without averaging.

    python benchmarks/bench_seeds.py --model lstm --seeds 1 2 3
    python benchmarks/bench_seeds.py --model lstm --seeds 1 2 3 --set beta2=0.99
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from charlm.data.encoded import EncodedSplits
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.evaluation.evaluate import evaluate
from charlm.evaluation.metrics import EvalResult
from charlm.evaluation.writing import judge
from charlm.generation.decoder import generate_all
from charlm.model.directory import load_model_dir
from charlm.model.network import CharLM
from charlm.params.base import load_params
from charlm.params.generation import EvaluateConfig
from charlm.params.pipeline import Params
from charlm.params.training import ModelSpec
from charlm.training.state import LoopState, TrainData
from charlm.training.trainer import Trainer


def overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` arguments as settings, each value read as YAML (as `dvc exp run -S` reads it)."""
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


@dataclass
class Trained:
    net: CharLM  # the exported best-by-validation weights, the ones the evaluate stage scores
    last: CharLM  # the last step's weights: with train.average_last, what averaging improves on
    loop: LoopState
    seconds: float  # of training, its validation passes and checkpoints included
    device: torch.device
    dtype: torch.dtype | None  # autocast's, None for fp32

    def stateful(self, ids: np.ndarray, cfg: EvaluateConfig, net: CharLM | None = None) -> EvalResult:
        """The evaluate stage's score: a full pass over `ids` in `cfg`'s layout, state carried."""
        return evaluate(net or self.net, ids, cfg.batch_size, cfg.seq_len, self.device, self.dtype)


def trained(spec: ModelSpec, data: TrainData) -> Trained:
    """`spec` trained as the train stage trains it (only `data` differs)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(spec, data, Path(tmp) / "checkpoints")
        started = time.perf_counter()
        trainer.fit(None, Path(tmp) / "best", [], lambda *_: None)
        seconds = time.perf_counter() - started
        net = load_model_dir(Path(tmp) / "best", trainer.device).net
    return Trained(net, trainer.net, trainer.loop, seconds, trainer.device, trainer.dtype)


def spread(label: str, scores: list[float]) -> str:
    """Mean, standard deviation and spread (max - min) of one setting's scores."""
    sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return (
        f"{label}mean {statistics.mean(scores):.4f}, standard deviation {sd:.4f},"
        f" spread {max(scores) - min(scores):.4f} over {len(scores)} seeds"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="values of train.seed")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the model's settings"
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(Params, Path(args.params))
    changes = overrides(args.set)
    encoded, report = (
        EncodedSplits(Path(params.paths["encoded"])),
        DataReport.read(Path(params.paths["data_report"])),
    )
    vocab = Vocabulary.load(Path(params.paths["vocab"]))
    data = TrainData(
        encoded.load("train"), encoded.load("val"), vocab, {s: report.sha256(s) for s in ("train", "val")}
    )
    base = params.models[args.model].model_dump()
    print(f"{args.model} with {changes or 'its settings'}, train.seed in {args.seeds}")
    scores, last, cfg = [], [], params.evaluate
    for seed in args.seeds:
        spec = ModelSpec.parse(base | changes | {"seed": seed})
        run = trained(spec, data)
        bpc = run.stateful(data.val, cfg).bpc
        scores.append(bpc)
        if run.loop.averaged_steps:
            last.append(run.stateful(data.val, cfg, run.last).bpc)
        wanted = cfg.writing.options(params.generate)
        texts = generate_all(run.net.cpu(), vocab, wanted)
        writing = judge(data.train, data.val, vocab, cfg.writing, wanted, texts)
        print(
            f"  train.seed {seed}: val bpc {bpc:.4f} in {run.seconds:.0f} s of training ({run.loop.steps} steps);"
            f" writes: {writing.headline()}"
            + (f"; the last step's weights, unaveraged: {last[-1]:.4f}" if run.loop.averaged_steps else ""),
            flush=True,
        )
    print(spread("", scores))
    if last:
        print(spread("the last step's weights: ", last))
        print(
            spread(
                "averaged minus last, paired by seed: ", [a - b for a, b in zip(scores, last, strict=True)]
            )
        )


if __name__ == "__main__":
    main()
