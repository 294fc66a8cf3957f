"""Stage evaluate@<model>: full passes over val and test, with unigram/bigram reference points."""

import numpy as np

from charlm import io
from charlm.baselines import BASELINES, baseline_key
from charlm.checkpoint import load_model_dir
from charlm.device import autocast_dtype, select_device
from charlm.errors import run_cli
from charlm.evaluation import evaluate, split_report
from charlm.params import load_params
from charlm.stage import stage_args
from charlm.tracking import connect, log_metrics, model_run, stage_tags
from charlm.vocab import Vocabulary


def main() -> None:
    args = stage_args(__doc__, "model_dir", "vocab", "encoded", "metrics", model=True)
    params = load_params()
    cfg, train = params.evaluate, params.models[args.model].train

    device = select_device(train.device)
    dtype = autocast_dtype(train.precision, device)
    loaded = load_model_dir(args.model_dir, device, vocab=Vocabulary.load(args.vocab))
    ids = {split: np.load(args.encoded / f"{split}.npy") for split in ("train", "val", "test")}
    report: dict[str, object] = {"train_sha256": io.sha256_file(args.encoded / "train.npy")}
    vocab_size = len(loaded.vocab)
    for split in ("val", "test"):
        result = evaluate(loaded.model, ids[split], cfg.batch_size, cfg.seq_len, device, dtype)
        report.update(split_report(split, result, ids[split]))
        # What the bpc is comparable on, and what it must beat.
        report[f"{split}_sha256"] = io.sha256_file(args.encoded / f"{split}.npy")
        for name, baseline_bpc in BASELINES.items():
            report[baseline_key(name, split)] = baseline_bpc(ids["train"], ids[split], vocab_size)
    report["num_params"] = loaded.model.num_parameters()

    client = connect()
    tags = {**stage_tags(f"evaluate@{args.model}"), "charlm.model": args.model}
    training_run = loaded.info.get("mlflow_run_id")
    run_name = f"{args.model} (evaluation)"
    with model_run(client, training_run, params.tracking.experiment, run_name, tags) as (run_id, created):
        log_metrics(client, run_id, report)
        for split in ("val", "test"):
            client.set_tag(run_id, f"{split}.sha256", report[f"{split}_sha256"])
    report["mlflow_run_id"] = run_id
    report["mlflow_run"] = "new" if created else "training"
    io.write_json(args.metrics, report)
    print(
        f"evaluate: {args.model}: val {report['val_bpc']:.4f} bpc, test {report['test_bpc']:.4f} bpc (unigram"
        f" {report[baseline_key('unigram', 'test')]:.3f}, bigram {report[baseline_key('bigram', 'test')]:.3f}); MLflow run {run_id} ({report['mlflow_run']})"
    )


if __name__ == "__main__":
    run_cli(main)
