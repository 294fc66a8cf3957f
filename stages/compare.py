"""Stage compare: one table and one chart comparing every model, plus merged curves for DVC plots."""

from charlm import io
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.report import comparison_table, merge_curves, plot_comparison, to_markdown
from charlm.stage import stage_args
from charlm.tracking import connect, experiment_id, stage_tags


def main() -> None:
    args = stage_args(
        __doc__,
        "train_metrics",
        "eval_metrics",
        "train_curves",
        "val_curves",
        "out_train",
        "out_val",
        "table",
        "chart",
    )
    params = load_params()

    merge_curves(args.train_curves, args.out_train)
    merge_curves(args.val_curves, args.out_val)
    table = comparison_table(list(params.models), args.train_metrics, args.eval_metrics)
    io.write_text(args.table, table.to_csv(index=False))
    markdown = to_markdown(table)
    io.write_text(args.table.with_suffix(".md"), markdown)
    plot_comparison(args.out_val, table, args.chart)

    client = connect()
    tags = {**stage_tags("compare"), "charlm.kind": "comparison"}
    run_id = client.create_run(
        experiment_id(client, params.tracking.experiment), run_name="comparison", tags=tags
    ).info.run_id
    for path in (args.table, args.table.with_suffix(".md"), args.chart, args.out_val):
        client.log_artifact(run_id, str(path), artifact_path="comparison")
    client.set_terminated(run_id)
    print(markdown)


if __name__ == "__main__":
    run_cli(main)
