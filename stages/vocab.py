"""Stage vocab: build the vocabulary from the training split and encode every split to .npy."""

from charlm.data.encoded import EncodedSplits
from charlm.data.splits import SPLITS
from charlm.data.vocab import Vocabulary, oov_rate
from charlm.errors import run_cli
from charlm.files import write_json
from charlm.params import load_params
from charlm.stage import stage_args


def main() -> None:
    args = stage_args(__doc__, "prepared", "vocab", "encoded", "metrics")
    params = load_params()

    texts = {name: (args.prepared / f"{name}.txt").read_text(encoding="utf-8") for name in SPLITS}
    vocab = Vocabulary.build(texts["train"], params.vocab.min_count)
    encoded = {name: vocab.encode(text) for name, text in texts.items()}
    EncodedSplits(args.encoded).write(encoded)
    vocab.save(args.vocab)
    metrics = {
        "vocab_size": len(vocab),
        **{f"{name}_oov_rate": oov_rate(ids) for name, ids in encoded.items()},
    }
    write_json(args.metrics, metrics)
    print(f"vocab: {len(vocab)} symbols (hash {vocab.hash[:12]}), {metrics}")


if __name__ == "__main__":
    run_cli(main)
