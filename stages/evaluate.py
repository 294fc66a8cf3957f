"""Stage evaluate@<model>: full passes over the held-out splits with the hidden state carried, and
the texts the model writes after the `evaluate.writing` prompts, judged against the training split."""

from charlm.data.encoded import EncodedSplits
from charlm.data.layout import HELD_OUT
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.errors import run_cli
from charlm.evaluation.dynamic import dynamic
from charlm.evaluation.evaluate import evaluate
from charlm.evaluation.report import EvalReport, SplitReport
from charlm.evaluation.writing import judge, transcript
from charlm.generation.decoder import generate_all
from charlm.model.device import autocast_dtype, select_device
from charlm.model.directory import load_model_dir
from charlm.params.base import TrackingConfig, flatten, load_params
from charlm.params.generation import EvaluateConfig, GenerateConfig
from charlm.params.training import Models
from charlm.progress import work_bar
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.runs import DatasetRef, StageTracking, log_metrics


class Params(Models):
    evaluate: EvaluateConfig
    generate: GenerateConfig
    tracking: TrackingConfig


def main() -> None:
    args = stage_args(__doc__, "model_dir", "vocab", "encoded", "data_report", "metrics", named=True)
    params = load_params(Params)
    cfg, train = params.evaluate, params.spec(args.name).train

    device = select_device(train.device)
    dtype = autocast_dtype(train.precision, device)
    loaded = load_model_dir(args.model_dir, device, vocab=Vocabulary.load(args.vocab))
    encoded, data = EncodedSplits(args.encoded), DataReport.read(args.data_report)
    splits = {}
    for split in HELD_OUT:
        with work_bar(f"evaluate {args.name} {split}", "char") as bar:
            result = evaluate(
                loaded.net, encoded.load(split), cfg.batch_size, cfg.seq_len, device, dtype, bar
            )
        splits[split] = SplitReport(**result.model_dump(), sha256=data.sha256(split))
    with work_bar(f"evaluate {args.name} dynamically", "char") as bar:
        static, learning = dynamic(loaded.net, encoded.load("test"), cfg.dynamic, device, dtype, bar)
    wanted = cfg.writing.options(params.generate)
    with work_bar(f"evaluate {args.name} writes", "char") as bar:
        texts = generate_all(loaded.net, loaded.vocab, wanted, bar)
    with work_bar(f"evaluate {args.name} judge", "char") as bar:
        writing = judge(
            encoded.load("train"), encoded.load("val"), loaded.vocab, cfg.writing, wanted, texts, bar
        )

    tracking = StageTracking.open(params.tracking, "evaluate", args.name)
    with tracking.model_run(loaded.info.mlflow_run_id, f"{args.name} (evaluation)") as (run_id, new):
        report = EvalReport(
            name=args.name,
            model_dir=args.model_dir.as_posix(),
            **splits,
            writing=writing,
            dynamic_static=static,
            dynamic=learning,
            num_params=loaded.net.num_parameters(),
            mlflow_run_id=run_id,
            mlflow_run="new" if new else "training",
        )
        log_metrics(tracking.client, run_id, flatten(report, sep="_"))
        tracking.client.log_text(run_id, transcript(wanted, texts), f"writing/{args.name}.txt")
        for split, figures in splits.items():  # what the figures are comparable on
            tracking.client.set_tag(run_id, tag.split_sha256(split), figures.sha256)
        held_out = [DatasetRef(s, data.sha256(s), data.source(encoded.path(s))) for s in HELD_OUT]
        tracking.log_datasets(run_id, held_out)
        if new:
            about = f"The evaluation of `{args.model_dir.as_posix()}` on {data.corpus}: its training run is not here."
            tracking.client.set_tag(run_id, tag.DESCRIPTION, about)
    report.write(args.metrics)
    print(
        f"evaluate: {args.name}: val {report.val.bpc:.4f} bpc, test {report.test.bpc:.4f} bpc"
        f" (its first {learning.chars:,} characters {static.bpc:.4f}, dynamically {learning.bpc:.4f});"
        f" MLflow run {run_id} ({report.mlflow_run})\nevaluate: {args.name} writes: {writing.headline()}"
    )


if __name__ == "__main__":
    run_cli(main)
