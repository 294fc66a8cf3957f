"""Stage evaluate@<model>: full passes over val and test, with unigram/bigram reference points."""

from charlm.data.encoded import EncodedSplits
from charlm.data.splits import HELD_OUT
from charlm.data.vocab import Vocabulary
from charlm.errors import run_cli
from charlm.evaluation.evaluate import evaluate
from charlm.evaluation.report import EvalReport, SplitReport
from charlm.model.device import autocast_dtype, select_device
from charlm.model.directory import load_model_dir
from charlm.params import load_params
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.runs import log_metrics, model_run
from charlm.tracking.store import connect


def main() -> None:
    args = stage_args(__doc__, "model_dir", "vocab", "encoded", "metrics", model=True)
    params = load_params()
    cfg, train = params.evaluate, params.models[args.model].train

    device = select_device(train.device)
    dtype = autocast_dtype(train.precision, device)
    loaded = load_model_dir(args.model_dir, device, vocab=Vocabulary.load(args.vocab))
    encoded = EncodedSplits(args.encoded)
    train_ids, vocab_size = encoded.load("train"), len(loaded.vocab)
    splits = {}
    for split in HELD_OUT:
        ids = encoded.load(split)
        result = evaluate(loaded.model, ids, cfg.batch_size, cfg.seq_len, device, dtype)
        splits[split] = SplitReport.of(result, ids, encoded.sha256(split), train_ids, vocab_size)

    client = connect()
    run_name = f"{args.model} (evaluation)"
    hashes = {tag.split_sha256(split): report.sha256 for split, report in splits.items()}
    tags = tag.stage_tags("evaluate", args.model) | hashes
    with model_run(client, loaded.info.mlflow_run_id, params.tracking.experiment, run_name, tags) as (
        run_id,
        new,
    ):
        report = EvalReport(
            train_sha256=encoded.sha256("train"),
            **splits,
            num_params=loaded.model.num_parameters(),
            mlflow_run_id=run_id,
            mlflow_run="new" if new else "training",
        )
        log_metrics(client, run_id, report.model_dump())
        for key, value in hashes.items():  # what the figures are comparable on
            client.set_tag(run_id, key, value)
    report.write(args.metrics)
    baselines = ", ".join(f"{name} {bpc:.3f}" for name, bpc in report.test.baselines.items())
    print(
        f"evaluate: {args.model}: val {report.val.bpc:.4f} bpc, test {report.test.bpc:.4f} bpc ({baselines});"
        f" MLflow run {run_id} ({report.mlflow_run})"
    )


if __name__ == "__main__":
    run_cli(main)
