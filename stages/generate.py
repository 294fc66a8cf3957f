"""Stage generate@<model>: sample text from a trained model and log it to MLflow."""

from charlm.errors import run_cli
from charlm.generation.decoder import generate_all
from charlm.generation.samples import Sample, Samples
from charlm.model.directory import load_model_dir
from charlm.params.base import TrackingConfig, load_params
from charlm.params.generation import GenerateConfig
from charlm.records import Record
from charlm.stage import stage_args
from charlm.tracking.runs import StageTracking


class Params(Record):
    generate: GenerateConfig
    tracking: TrackingConfig


def main() -> None:
    args = stage_args(__doc__, "model_dir", "out", named=True)
    params = load_params(Params)

    loaded = load_model_dir(args.model_dir)
    wanted = params.generate.wanted()
    texts = generate_all(loaded.net, loaded.vocab, wanted)
    samples = tuple(
        Sample(prompt=prompt, seed=options.seed, temperature=options.temperature, text=text)
        for (prompt, options), text in zip(wanted, texts, strict=True)
    )
    written = Samples(name=args.name, samples=samples)
    written.write(args.out)

    tracking = StageTracking.open(params.tracking, "generate", args.name)
    with tracking.model_run(loaded.info.mlflow_run_id, f"{args.name} (samples)") as (run_id, _):
        tracking.client.log_text(run_id, written.to_text(), f"samples/{args.out.name}")
    print(Samples(name=args.name, samples=samples[:1]).to_text())


if __name__ == "__main__":
    run_cli(main)
