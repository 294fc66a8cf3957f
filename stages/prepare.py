"""Stage prepare: select and clean the raw documents, then split them into train/val/test text."""

from charlm.data.corpus import read_documents
from charlm.data.splits import check_lengths, split_documents, summary
from charlm.errors import run_cli
from charlm.files import replace_dir, write_json, write_text
from charlm.params import load_params
from charlm.stage import stage_args


def main() -> None:
    args = stage_args(__doc__, "raw", "out", "metrics")
    params = load_params()

    docs = read_documents(args.raw, params.prepare)
    splits = split_documents(docs, params.prepare, params.seed)
    check_lengths(splits, params.train.seq_len)
    with replace_dir(args.out) as staging:
        for name, split in splits.items():
            write_text(staging / f"{name}.txt", split.text)
    write_json(args.metrics, summary(splits))
    for name, split in splits.items():
        print(f"prepare: {name}: {len(split.text):,} characters in {len(split.documents)} documents")


if __name__ == "__main__":
    run_cli(main)
