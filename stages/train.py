"""Stage train@<model>: train one model named under `models:` and track it in MLflow.

With `distributed` asking for several processes, the stage re-runs itself under torchrun.
"""

from charlm.data.encoded import EncodedSplits
from charlm.data.vocab import Vocabulary
from charlm.errors import ParamsError, run_cli
from charlm.params import flatten, load_params
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.store import connect
from charlm.training import distributed
from charlm.training.outputs import TrainOutputs
from charlm.training.run import run_training
from charlm.training.trainer import TrainData


def main() -> None:
    args = stage_args(
        __doc__, "vocab", "encoded", "out", "checkpoints", "metrics", "train_curve", "val_curve", model=True
    )
    params = load_params()
    if args.model not in params.models:
        raise ParamsError(f"models.{args.model}: no such model (have {', '.join(params.models)})")
    run = params.models[args.model]
    if params.distributed.world_size > 1 and not distributed.launched():
        distributed.relaunch(params.distributed)

    vocab = Vocabulary.load(args.vocab)
    data = TrainData.load(EncodedSplits(args.encoded), vocab)
    outputs = TrainOutputs(args.out, args.checkpoints, args.metrics, args.train_curve, args.val_curve)
    tags = {**tag.stage_tags("train", run.name), tag.VOCAB_SHA256: vocab.hash}
    tags |= {tag.split_sha256(s): sha for s, sha in data.sha256.items()}
    mlflow_params = {
        **flatten(run.settings()),
        "model.vocab_size": len(vocab),
        "seed": params.seed,
        "distributed.world_size": params.distributed.world_size,
    }
    with distributed.world(params.distributed.backend) as world:
        client = connect() if world.is_main else None
        summary = run_training(
            run, params.seed, data, outputs, client, params.tracking.experiment, mlflow_params, tags, world
        )
    if world.is_main:
        print(f"train: {run.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.model_dump().items()))


if __name__ == "__main__":
    run_cli(main)
