"""Stage prepare: select and clean the raw documents, then split them into train/val/test text."""

import tempfile
from pathlib import Path

from charlm.data.corpus import read_documents, selected_bytes
from charlm.data.layout import prepared_file
from charlm.data.splits import check_lengths, prepare_metrics, split_documents
from charlm.errors import run_cli
from charlm.files import replace_dir, write_json
from charlm.params.base import load_params
from charlm.params.data import PrepareConfig
from charlm.params.training import TrainConfig
from charlm.progress import bytes_bar
from charlm.records import Record
from charlm.stage import stage_args


class Params(Record):
    prepare: PrepareConfig
    train: TrainConfig  # its seq_len: every split must hold one training sequence


def main() -> None:
    args = stage_args(__doc__, "raw", "out", "metrics")
    params = load_params(Params)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Cleaned documents wait beside the output, on its filesystem, until the splits are written.
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp, replace_dir(args.out) as staging:
        with bytes_bar(selected_bytes(args.raw, params.prepare), "prepare") as bar:
            docs = read_documents(args.raw, params.prepare, Path(tmp), bar.update)
        splits = split_documents(docs, params.prepare, Path(tmp))
        check_lengths(splits, params.train.seq_len)
        for name, split in splits.items():
            split.move_to(prepared_file(staging, name))
    write_json(args.metrics, prepare_metrics(splits))
    for name, split in splits.items():
        print(f"prepare: {name}: {split.chars:,} characters in {len(split.documents)} documents")


if __name__ == "__main__":
    run_cli(main)
