"""Stage compare: one table and one chart comparing every model, plus merged curves for DVC plots."""

from charlm.comparison import comparison_table, merge_curves, plot_comparison, to_markdown
from charlm.errors import run_cli
from charlm.files import write_text
from charlm.params import load_params
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.runs import stage_run
from charlm.tracking.store import connect


def main() -> None:
    inputs = ("train_metrics", "eval_metrics", "train_curves", "val_curves")
    args = stage_args(__doc__, *inputs, "out_train", "out_val", "table", "chart")
    params = load_params()

    merge_curves(args.train_curves, args.out_train)
    merge_curves(args.val_curves, args.out_val)
    table = comparison_table(list(params.models), args.train_metrics, args.eval_metrics)
    write_text(args.table, table.to_csv(index=False))
    markdown = to_markdown(table)
    write_text(args.table.with_suffix(".md"), markdown)
    plot_comparison(args.out_val, table, args.chart)

    client = connect()
    tags = tag.stage_tags("compare") | {tag.KIND: "comparison"}
    with stage_run(client, params.tracking.experiment, "comparison", tags) as run_id:
        for path in (args.table, args.table.with_suffix(".md"), args.chart, args.out_val):
            client.log_artifact(run_id, str(path), artifact_path="comparison")
    print(markdown)


if __name__ == "__main__":
    run_cli(main)
