"""Stage vocab: build the vocabulary from the training split, encode every split to .npy, and
report the facts of the data that later stages share (sizes, hashes, <unk> rates, baselines)."""

from charlm.data.chunks import line_chunks
from charlm.data.encoded import EncodedSplits
from charlm.data.layout import HELD_OUT, SPLITS, prepared_file
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary, char_counts
from charlm.errors import run_cli
from charlm.evaluation.baselines import BASELINES, ORDER
from charlm.evaluation.ngram import check_order
from charlm.generation.prompts import check_params
from charlm.params.base import load_params
from charlm.params.data import FetchConfig, PrepareConfig, VocabConfig
from charlm.params.generation import EvaluateConfig, GenerateConfig
from charlm.progress import bytes_bar
from charlm.records import Record
from charlm.stage import stage_args


class Params(Record):
    fetch: FetchConfig  # the corpus's name, for the report
    prepare: PrepareConfig  # its unicode_form: the vocabulary records it, for prompts to be put in
    vocab: VocabConfig
    # What needs only the vocabulary is checked as soon as it exists, not after training: the
    # prompts generated from, and the writing judge's n-gram order.
    generate: GenerateConfig
    evaluate: EvaluateConfig


def main() -> None:
    args = stage_args(__doc__, "prepared", "vocab", "encoded", "report")
    params = load_params(Params)

    texts = {name: prepared_file(args.prepared, name) for name in SPLITS}
    # The training split is read twice (its characters counted, then encoded), the others twice
    # too (their length, then encoded); encoding counts the characters and pairs for the baselines.
    total = 2 * sum(path.stat().st_size for path in texts.values())
    with bytes_bar(total, "vocab") as bar, open(texts["train"], "rb") as train:
        vocab = Vocabulary.from_counts(
            char_counts(data for _, data in line_chunks(train, on_read=bar.update)),
            params.vocab.min_count,
            params.prepare.unicode_form,
        )
        check_order(len(vocab), params.evaluate.writing.ngram_order)
        notes = check_params(vocab, params.generate, params.evaluate.writing)
        known = {"train": sum(vocab.counts)}  # every character the vocabulary counted, <unk> ones too
        written = EncodedSplits(args.encoded).write(texts, vocab, ORDER, bar.update, known)
    vocab.save(args.vocab)
    counts = {split: ngrams for split, (_, ngrams) in written.items()}
    baselines = {
        name: {split: bpc(counts["train"], counts[split]) for split in HELD_OUT}
        for name, bpc in BASELINES.items()
    }
    splits = {split: data for split, (data, _) in written.items()}
    report = DataReport(
        corpus=params.fetch.describe(), vocab_size=len(vocab), splits=splits, baselines=baselines
    )
    report.write(args.report)
    print(f"vocab: {len(vocab)} symbols (sha256 {vocab.sha256[:12]}), {report.model_dump()}")
    for note in notes:
        print(f"vocab: {note}")


if __name__ == "__main__":
    run_cli(main)
