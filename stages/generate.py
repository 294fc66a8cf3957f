"""Stage generate@<model>: sample text from a trained model and log it to MLflow."""

from charlm import io
from charlm.checkpoint import load_model_dir
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.sample import generate
from charlm.stage import stage_args
from charlm.tracking import connect, model_run, stage_tags


def main() -> None:
    args = stage_args(__doc__, "model_dir", "out", model=True)
    params = load_params()
    cfg = params.generate

    loaded = load_model_dir(args.model_dir)
    blocks = []
    for p, prompt in enumerate(cfg.prompts):
        for s in range(cfg.num_samples):
            options = cfg.options(p * cfg.num_samples + s)
            text = "".join(generate(loaded.model, loaded.vocab, prompt, options))
            blocks.append(
                f"=== {args.model} | prompt {prompt!r} | seed {options.seed} | T={options.temperature}\n{prompt}{text}\n"
            )
    io.write_text(args.out, "\n".join(blocks))

    client = connect()
    tags = {**stage_tags(f"generate@{args.model}"), "charlm.model": args.model}
    training_run = loaded.info.get("mlflow_run_id")
    run_name = f"{args.model} (samples)"
    with model_run(client, training_run, params.tracking.experiment, run_name, tags) as (run_id, _):
        client.log_text(run_id, "\n".join(blocks), f"samples/{args.out.name}")
    print(blocks[0])


if __name__ == "__main__":
    run_cli(main)
