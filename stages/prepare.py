"""Stage prepare: select and clean the raw documents, then split them into train/val/test text."""

from charlm import io
from charlm.corpus import read_documents
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.splits import check_lengths, split_documents, summary
from charlm.stage import stage_args


def main() -> None:
    args = stage_args(__doc__, "raw", "out", "metrics")
    params = load_params()

    docs = read_documents(args.raw, params.prepare)
    splits = split_documents(docs, params.prepare, params.seed)
    check_lengths(splits, params.train.seq_len)
    with io.replace_dir(args.out) as staging:
        for name, split in splits.items():
            io.write_text(staging / f"{name}.txt", split.text)
    report = summary(splits)
    io.write_json(args.metrics, report)
    for name in splits:
        print(f"prepare: {name}: {report[name]}")


if __name__ == "__main__":
    run_cli(main)
