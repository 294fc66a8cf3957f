"""Stage vocab: build the vocabulary from the training split and encode every split to .npy."""

from charlm import io
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.splits import SPLITS
from charlm.stage import stage_args
from charlm.vocab import Vocabulary, oov_rate


def main() -> None:
    args = stage_args(__doc__, "prepared", "vocab", "encoded", "metrics")
    params = load_params()

    texts = {name: (args.prepared / f"{name}.txt").read_text(encoding="utf-8") for name in SPLITS}
    vocab = Vocabulary.build(texts["train"], params.vocab.min_count)
    encoded = {name: vocab.encode(text) for name, text in texts.items()}
    with io.replace_dir(args.encoded) as staging:
        for name, ids in encoded.items():
            io.write_npy(staging / f"{name}.npy", ids)
    vocab.save(args.vocab)
    metrics = {
        "vocab_size": len(vocab),
        **{f"{name}_oov_rate": oov_rate(ids) for name, ids in encoded.items()},
    }
    io.write_json(args.metrics, metrics)
    print(f"vocab: {len(vocab)} symbols (hash {vocab.hash[:12]}), {metrics}")


if __name__ == "__main__":
    run_cli(main)
