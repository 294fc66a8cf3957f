"""Stage train@<model>: train one model named under `models:` and track it in MLflow. With `distributed`
asking for several processes, the stage re-runs itself under torchrun."""

from charlm.data.encoded import EncodedSplits
from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.errors import run_cli
from charlm.params.base import TrackingConfig, load_params
from charlm.params.training import DistributedConfig, Models
from charlm.stage import stage_args
from charlm.tracking.runs import DatasetRef, StageTracking
from charlm.training import distributed
from charlm.training.job import TrainJob, train_model
from charlm.training.outputs import TrainOutputs
from charlm.training.state import TrainData


class Params(Models):
    tracking: TrackingConfig
    distributed: DistributedConfig


def main() -> None:
    paths = ("vocab", "encoded", "data_report", "out", "checkpoints", "metrics", "train_curve", "val_curve")
    args = stage_args(__doc__, *paths, named=True)
    params = load_params(Params)
    spec = params.spec(args.name)
    if params.distributed.world_size > 1 and not distributed.launched():
        distributed.relaunch(params.distributed)

    encoded, report = EncodedSplits(args.encoded), DataReport.read(args.data_report)
    datasets = [DatasetRef(s, report.sha256(s), report.source(encoded.path(s))) for s in ("train", "val")]
    hashes = {dataset.split: dataset.sha256 for dataset in datasets}
    data = TrainData(encoded.load("train"), encoded.load("val"), Vocabulary.load(args.vocab), hashes)
    outputs = TrainOutputs(args.out, args.checkpoints, args.metrics, args.train_curve, args.val_curve)
    with distributed.world(params.distributed.backend) as world:
        tracking = StageTracking.open(params.tracking, "train", spec.name) if world.is_main else None
        job = TrainJob(spec, data, outputs, datasets, report.corpus)
        summary = train_model(job, tracking, world)
    if world.is_main:
        shown = (
            f"{k}={v}" if isinstance(v, str) else f"{k}={v:.4g}" for k, v in summary.model_dump().items()
        )
        print(f"train: {', '.join(shown)}")


if __name__ == "__main__":
    run_cli(main)
