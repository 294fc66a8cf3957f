"""Stage vocab: build the vocabulary from the training split and encode every split to .npy."""

from charlm.data.chunks import line_chunks
from charlm.data.encoded import EncodedSplits
from charlm.data.splits import SPLITS
from charlm.data.vocab import Vocabulary, char_counts
from charlm.errors import run_cli
from charlm.files import write_json
from charlm.params import load_params
from charlm.progress import bytes_bar
from charlm.stage import stage_args


def main() -> None:
    args = stage_args(__doc__, "prepared", "vocab", "encoded", "metrics")
    params = load_params()

    texts = {name: args.prepared / f"{name}.txt" for name in SPLITS}
    # Read three times: the training split to count its characters, then every split twice to encode it.
    total = texts["train"].stat().st_size + 2 * sum(path.stat().st_size for path in texts.values())
    with bytes_bar(total, "vocab") as bar, open(texts["train"], "rb") as train:
        vocab = Vocabulary.from_counts(
            char_counts(data for _, data in line_chunks(train, on_read=bar.update)), params.vocab.min_count
        )
        oov = EncodedSplits(args.encoded).write(texts, vocab, bar.update)
    vocab.save(args.vocab)
    metrics = {"vocab_size": len(vocab), **{f"{name}_oov_rate": rate for name, rate in oov.items()}}
    write_json(args.metrics, metrics)
    print(f"vocab: {len(vocab)} symbols (hash {vocab.hash[:12]}), {metrics}")


if __name__ == "__main__":
    run_cli(main)
