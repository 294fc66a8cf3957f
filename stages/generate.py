"""Stage generate@<model>: sample text from a trained model and log it to MLflow."""

import argparse
from pathlib import Path

from charlm import io
from charlm.checkpoint import load_model_dir
from charlm.errors import run_cli
from charlm.params import load_params
from charlm.sample import generate
from charlm.tracking import attach_run, connect, stage_tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a name under `models:` in params.yaml")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="samples text file")
    args = parser.parse_args()
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
    run_id, created = attach_run(
        client, loaded.info.get("mlflow_run_id"), params.tracking.experiment, f"{args.model} (samples)", tags
    )
    client.log_text(run_id, "\n".join(blocks), f"samples/{args.out.name}")
    if created:
        client.set_terminated(run_id)
    print(blocks[0])


if __name__ == "__main__":
    run_cli(main)
