"""The compare stage's reports: merged training curves (one long table with a `model` column, so one
chart shows every model), the comparison table and its chart."""

import csv
from pathlib import Path

import pandas as pd

from charlm.data.report import DataReport
from charlm.errors import DataError
from charlm.evaluation.baselines import BASELINES
from charlm.evaluation.report import EvalReport
from charlm.files import atomic_path, write_csv
from charlm.training.outputs import TrainSummary


def merge_curves(directory: Path, out: Path) -> None:
    """Merge `directory/<model>.csv` files into `out` with a leading `model` column."""
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise DataError(f"{directory}: no curve files (run the train stages first)")
    rows: list[dict[str, object]] = []
    columns = ["model"]
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns += [c for c in reader.fieldnames or [] if c not in columns]
            rows += [{"model": path.stem, **row} for row in reader]
    write_csv(out, columns, ([row.get(c, "") for c in columns] for row in rows))


def comparison_table(
    reports: list[EvalReport], summaries: list[TrainSummary], data: DataReport
) -> pd.DataFrame:
    """One row per model, the best first (the order models are chosen in): its evaluation, the
    baselines on the same test data, and its steps; figures that change with the machine (time,
    speed) stay in the training summaries."""
    trained = {summary.name: summary for summary in summaries}
    rows = []
    for report in sorted(reports, key=lambda r: r.standing.key):
        if report.name not in trained:
            raise DataError(f"{report.name}: evaluated, but no training summary (run train@{report.name})")
        summary, test = trained[report.name], report.test
        rows.append(
            {
                "model": report.name,
                "val_bpc": report.val.bpc,
                "test_bpc": test.bpc,
                "test_loss_nats": test.loss_nats,
                "test_perplexity": test.perplexity,
                "test_accuracy": test.accuracy,
                "dynamic_static_bpc": report.dynamic_static.bpc,
                "dynamic_bpc": report.dynamic.bpc,
                **{f"{name}_test_bpc": data.baselines[name]["test"] for name in BASELINES},
                "num_params": report.num_params,
                "steps": summary.steps,
            }
        )
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    formats = {"num_params": "{:,.0f}", "steps": "{:.0f}"}
    shown = table.copy()
    for column in shown.columns[1:]:
        shown[column] = [formats.get(column, "{:.4f}").format(v) for v in shown[column]]
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *lines]) + "\n"


def plot_comparison(val_curves: Path, table: pd.DataFrame, data: DataReport, out: Path) -> None:
    """Validation bpc over training steps per model, beside test bpc against the n-gram baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = pd.read_csv(val_curves)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, group in curves.groupby("model"):
        left.plot(group["step"], group["train_val_bpc"], marker="o", label=name)  # a ValPoint field
    left.set(title="Validation bits per character during training", xlabel="step", ylabel="bpc")
    left.legend()
    right.bar(table["model"], table["test_bpc"], color="tab:blue")
    for name, style in zip(BASELINES, (":", "--"), strict=True):
        right.axhline(data.baselines[name]["test"], color="grey", linestyle=style, label=f"{name} baseline")
    right.set(title="Test bits per character (lower is better)", ylabel="bpc")
    right.legend()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
