"""Dynamic evaluation's settings, chosen on validation text: a trained model read over the start of
the validation split, as trained and learning as it reads, for every learning rate and decay of a
grid (`evaluate.dynamic` gives the characters and the segment length unless overridden). The
evaluate stage reports the chosen settings on the test split, which never chooses them:

    python benchmarks/bench_dynamic.py --model lstm --learning-rates 0.03 0.1 0.3 --decays 0 0.01
"""

import argparse
import time
from pathlib import Path

from charlm.data.encoded import EncodedSplits
from charlm.evaluation.dynamic import dynamic
from charlm.model.device import autocast_dtype, select_device
from charlm.model.directory import load_model_dir
from charlm.params.base import load_params
from charlm.params.pipeline import Params


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="lstm", help="a model under `models:`, trained by `make run`")
    parser.add_argument("--learning-rates", type=float, nargs="+", required=True)
    parser.add_argument("--decays", type=float, nargs="+", required=True)
    parser.add_argument("--chars", type=int, help="of the validation split (default: evaluate.dynamic's)")
    parser.add_argument("--seq-len", type=int, help="per update (default: evaluate.dynamic's)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(Params, Path(args.params))
    train, model_dir = params.spec(args.model).train, Path(params.paths["models"]) / args.model
    device = select_device(train.device)
    dtype = autocast_dtype(train.precision, device)
    model = load_model_dir(model_dir, device).net
    val = EncodedSplits(Path(params.paths["encoded"])).load("val")
    base = params.evaluate.dynamic.model_dump() | {
        key: value for key, value in {"chars": args.chars, "seq_len": args.seq_len}.items() if value
    }
    print(
        f"{model_dir}: the first {base['chars']:,} characters of the validation split, {base['seq_len']} per update"
    )
    for learning_rate in args.learning_rates:
        for decay in args.decays:
            cfg = type(params.evaluate.dynamic).parse(base | {"learning_rate": learning_rate, "decay": decay})
            started = time.perf_counter()
            static, learning = dynamic(model, val, cfg, device, dtype)
            print(
                f"  learning rate {learning_rate:g}, decay {decay:g}: {learning.bpc:.4f} bpc"
                f" ({learning.bpc - static.bpc:+.4f} on {static.bpc:.4f} as trained)"
                f" in {time.perf_counter() - started:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
