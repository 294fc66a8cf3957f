"""Training and evaluation on one device, per precision: the train and evaluate stages' own code.

For each model of params.yaml and each precision asked for, this trains with the train stage's
`Trainer` (checkpoints included) on the default corpus's encoded splits, restores the last
checkpoint into a fresh model and optimizer on the same device, and scores the best-by-validation
weights on val and test with the evaluate stage's `evaluate`. DVC and MLflow are left out: the
figures are the device's. Run it after `make run`, which writes data/vocab.json and data/encoded/:

    python benchmarks/bench_device.py --precision bf16 fp32      # on a GPU machine
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from charlm.data.encoded import EncodedSplits
from charlm.data.layout import HELD_OUT
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.evaluation.evaluate import evaluate
from charlm.model.directory import load_model_dir
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.params.training import ModelSpec
from charlm.training.state import STATE_FILE, TrainData, read_state
from charlm.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", help="train.device for every model (default: as params.yaml says)")
    args = parser.parse_args()

    params = load_params(Params, Path(args.params))
    encoded, report = (
        EncodedSplits(Path(params.paths["encoded"])),
        DataReport.read(Path(params.paths["data_report"])),
    )
    vocab = Vocabulary.load(Path(params.paths["vocab"]))
    hashes = {split: report.sha256(split) for split in ("train", "val")}
    data = TrainData(encoded.load("train"), encoded.load("val"), vocab, hashes)
    held_out = {split: encoded.load(split) for split in HELD_OUT}
    print("model | device | precision | steps | train chars/s (steps) | wall s | val bpc | test bpc")
    for precision in args.precision:
        for name, run in params.models.items():
            overrides = {"precision": precision} | ({"device": args.device} if args.device else {})
            run = ModelSpec.parse(run.model_dump() | overrides)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(run, data, Path(tmp) / "checkpoints")
                start = time.perf_counter()
                loop = trainer.fit(None, Path(tmp) / "best", [], lambda *_: None)
                wall = time.perf_counter() - start
                # The checkpoint restores into a fresh model and optimizer on the same device.
                fresh = Trainer(
                    ModelSpec.parse(run.model_dump() | {"seed": run.train.seed + 1}),
                    data,
                    Path(tmp) / "checkpoints",
                )
                read_state(Path(tmp) / "checkpoints" / STATE_FILE).restore(
                    fresh.net, fresh.optimizer, Path(tmp)
                )  # type: ignore[union-attr]
                for a, b in zip(trainer.net.parameters(), fresh.net.parameters(), strict=True):
                    assert torch.equal(a, b), "the restored weights differ from the trained ones"
                best = load_model_dir(Path(tmp) / "best", trainer.device)
                bpc = {
                    split: evaluate(
                        best.net,
                        ids,
                        params.evaluate.batch_size,
                        params.evaluate.seq_len,
                        trainer.device,
                        trainer.dtype,
                    ).bpc
                    for split, ids in held_out.items()
                }
            dtype = "bf16" if trainer.dtype is not None else "fp32"
            chars_per_sec = loop.train_chars / loop.train_time_s
            print(
                f"{name} | {trainer.device} | {dtype} | {loop.steps} | {chars_per_sec:,.0f} | {wall:.1f}"
                f" | {bpc['val']:.4f} | {bpc['test']:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
