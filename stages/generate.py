"""Stage generate@<model>: sample text from a trained model and log it to MLflow."""

from charlm.errors import run_cli
from charlm.generation.decoder import generate
from charlm.generation.samples import Sample, Samples
from charlm.model.directory import load_model_dir
from charlm.params import load_params
from charlm.stage import stage_args
from charlm.tracking import tags as tag
from charlm.tracking.runs import model_run
from charlm.tracking.store import connect


def main() -> None:
    args = stage_args(__doc__, "model_dir", "out", model=True)
    params = load_params()
    cfg = params.generate

    loaded = load_model_dir(args.model_dir)
    samples = []
    for p, prompt in enumerate(cfg.prompts):
        for s in range(cfg.num_samples):
            options = cfg.options(p * cfg.num_samples + s)
            text = "".join(generate(loaded.model, loaded.vocab, prompt, options))
            samples.append(Sample(prompt, options.seed, options.temperature, text))
    written = Samples(args.model, tuple(samples))
    written.write(args.out)

    client = connect()
    tags = tag.stage_tags("generate", args.model)
    run_name = f"{args.model} (samples)"
    with model_run(client, loaded.info.mlflow_run_id, params.tracking.experiment, run_name, tags) as (
        run_id,
        _,
    ):
        client.log_text(run_id, written.to_text(), f"samples/{args.out.name}")
    print(Samples(args.model, written.samples[:1]).to_text())


if __name__ == "__main__":
    run_cli(main)
