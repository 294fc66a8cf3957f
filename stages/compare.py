"""Stage compare: one table and one chart comparing every model, plus merged curves for DVC plots."""

from charlm.comparison import comparison_table, merge_curves, plot_comparison, to_markdown
from charlm.data.report import DataReport
from charlm.errors import run_cli
from charlm.evaluation.report import EvalReport
from charlm.files import write_text
from charlm.params.base import TrackingConfig, load_params
from charlm.params.training import Models
from charlm.stage import of_models, stage_args
from charlm.tracking import tags as tag
from charlm.tracking.runs import StageTracking
from charlm.training.outputs import TrainSummary


class Params(Models):
    tracking: TrackingConfig


def main() -> None:
    inputs = ("train_metrics", "eval_metrics", "data_report", "train_curves", "val_curves")
    args = stage_args(__doc__, *inputs, "out_train", "out_val", "table", "chart")
    params = load_params(Params)

    merge_curves(args.train_curves, args.out_train)
    merge_curves(args.val_curves, args.out_val)
    table = comparison_table(
        of_models(EvalReport.read_all(args.eval_metrics), params.models, "evaluate"),
        of_models(TrainSummary.read_all(args.train_metrics), params.models, "train"),
        data := DataReport.read(args.data_report),
    )
    write_text(args.table, table.to_csv(index=False))
    markdown = to_markdown(table)
    write_text(args.table.with_suffix(".md"), markdown)
    plot_comparison(args.out_val, table, data, args.chart)

    tracking = StageTracking.open(params.tracking, "compare")
    about = (
        f"The models of this pipeline side by side: {', '.join(params.models)}; the table and chart below."
    )
    with tracking.new_run("comparison", **{tag.KIND: "comparison", tag.DESCRIPTION: about}) as run_id:
        for path in (args.table, args.table.with_suffix(".md"), args.chart, args.out_val):
            tracking.client.log_artifact(run_id, str(path), artifact_path="comparison")
    print(markdown)


if __name__ == "__main__":
    run_cli(main)
