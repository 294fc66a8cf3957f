"""The `charlm` command: everyday tasks around the pipeline."""

import argparse
import itertools
import os
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal, get_args, get_origin

from charlm.errors import CharlmError, ParamsError, run_cli
from charlm.model.directory import LoadedModel
from charlm.model.network import Step
from charlm.params.base import PARAMS_FILE, flatten, load_params
from charlm.params.generation import SamplingOptions
from charlm.params.pipeline import Params
from charlm.records import base_type
from charlm.serving.interface import DEFAULT_PORT

SAMPLING = SamplingOptions.model_fields
REGISTERED_URI = "an MLflow model URI (default: params.yaml's registered model and alias)"  # serve's, image's


def load_any_model(uri: str) -> tuple[LoadedModel, SamplingOptions, Step | None]:
    """A model, its default sampling options and its step: from a model directory, the project's
    `generate` params (its first sample's options: `charlm generate` with no option prints that sample)
    and the step as trained; from an MLflow model URI (models:/name@alias, models:/name/3,
    runs:/id/model), as that model serves."""
    if Path(uri).is_dir():
        from charlm.model.directory import load_model_dir

        if not PARAMS_FILE.is_file():
            raise ParamsError(
                f"--uri {uri}: a model directory samples as the project's `generate` params say,"
                f" and there is no {PARAMS_FILE} here; run in the project, or use an MLflow URI"
            )
        return load_model_dir(Path(uri)), load_params(Params).generate.options(), None
    if not uri.startswith(("models:/", "runs:/")):
        raise CharlmError(f"--uri {uri!r}: neither a model directory nor an MLflow models:/ or runs:/ URI")
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    from charlm.tracking.store import connect

    connect()
    try:
        served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except MlflowException as err:
        raise CharlmError(f"--uri {uri}: cannot load from MLflow ({str(err).splitlines()[0]})") from None
    return served.loaded, served.settings.sampling, served.batcher.net_step


def cmd_generate(args: argparse.Namespace) -> None:
    from charlm.generation.decoder import generate

    given = {name: getattr(args, name) for name in SAMPLING if getattr(args, name) is not None}
    SamplingOptions.check(given)  # out-of-range values fail before any model is loaded
    if args.server:  # the server checks the rest, and fills in what is not given as it serves
        from charlm.serving.client import stream_text

        chars: Iterator[str] = stream_text(args.server, {"prompt": args.prompt, **given})
    else:
        loaded, defaults, step = load_any_model(args.uri)
        options = SamplingOptions.parse(defaults.model_dump() | given)
        chars = generate(loaded.net, loaded.vocab, args.prompt, options, step)  # checks the prompt too
    chars = itertools.chain([next(chars, "")], chars)  # nothing is printed before the first piece
    sys.stdout.write(args.prompt)
    for char in chars:
        sys.stdout.write(char)
        sys.stdout.flush()
    sys.stdout.write("\n")


def cmd_serve(args: argparse.Namespace) -> None:
    from charlm.serving.launcher import serve_command
    from charlm.tracking.store import tracking_uri

    uri = args.uri or load_params(Params).registry.alias_uri
    cmd, env = serve_command(uri, args.host, args.port, tracking_uri(), args.workers, args.threads)
    address = f"http://{args.host}:{args.port}"
    print(
        f"serving {uri} on {address}/invocations, streaming on {address}/stream, a page at {address}/",
        flush=True,
    )
    os.execve(cmd[0], cmd, env)  # the server takes this process: Ctrl-C stops it directly


def cmd_image(args: argparse.Namespace) -> None:
    from charlm.serving.image import write_image
    from charlm.tracking.store import connect

    connect()
    uri = args.uri or load_params(Params).registry.alias_uri
    dockerfile = write_image(uri, args.out)
    print(f"image: {uri} in {args.out}; build it with: docker build -t charlm-serve {args.out}")
    print(f"image: then run it with: docker run -p 8080:8080 charlm-serve  ({dockerfile} says how)")


def cmd_params(args: argparse.Namespace) -> None:
    params = load_params(Params, args.file)
    print(f"{args.file}: valid; documents split with seed {params.prepare.seed}")
    for name, run in params.models.items():
        settings = " ".join(
            f"{k.split('.', 1)[1]}={v}"
            for k, v in flatten(run.model_dump(exclude={"name"})).items()
            if v is not None
        )
        print(f"  {name}: {settings}")


def cmd_tracking(args: argparse.Namespace) -> None:
    from charlm.tracking.store import connect, tracking_uri

    uri = tracking_uri()
    connect(uri)
    print(f"MLflow tracking store ready: {uri}")


def cmd_ui(args: argparse.Namespace) -> None:
    from charlm.tracking.store import connect, experiment_id, tracking_uri, ui_address

    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        raise CharlmError(f"MLFLOW_TRACKING_URI is {uri}: that server is the UI; open it instead")
    experiment = experiment_id(connect(uri), load_params(Params).tracking.experiment)
    print(f"MLflow UI: {ui_address(args.host, args.port, experiment)}", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    os.execv(cmd[0], [*cmd, "--host", args.host, "--port", str(args.port)])  # Ctrl-C stops it directly


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    for name, info in SAMPLING.items():
        choices = get_args(info.annotation) if get_origin(info.annotation) is Literal else None
        kind = base_type(info.annotation)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=None if kind is str else kind,
            choices=choices,
            help=f"{info.description} (default: as the generate params say, or as a registry model serves)",
        )


def installed_version() -> str:
    try:
        return version("charlm")
    except PackageNotFoundError:  # run from the code logged with a model, as in its image
        return "(not installed: the code logged with a model)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charlm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="stream text generated by a trained model")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--uri",
        "--model",  # the name it had first, which users type
        dest="uri",
        help="a model directory (models/<name>), sampling as params.yaml's `generate` says, or an MLflow"
        " URI (models:/charlm@champion, models:/charlm/<version>), sampling as that version serves",
    )
    source.add_argument("--server", help="a running `charlm serve`, e.g. http://127.0.0.1:5001")
    p.add_argument("--prompt", required=True)
    add_sampling_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("serve", help="serve a model with `mlflow models serve`, workers sized to the cores")
    p.add_argument("--uri", "--model", dest="uri", help=REGISTERED_URI)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--workers", type=positive_int, help="server processes (default: cores // threads)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per worker (default: 1)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("image", help="write a container image's build context serving a registered model")
    p.add_argument("--uri", "--model", dest="uri", help=REGISTERED_URI)
    p.add_argument("--out", type=Path, required=True, help="the build context to write (replaced)")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("params", help="validate params.yaml and show each model's settings")
    p.add_argument("--file", type=Path, default=PARAMS_FILE)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "tracking", help="create/check the MLflow tracking store (MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    p.set_defaults(func=cmd_tracking)

    p = sub.add_parser(
        "ui", help="the MLflow UI on ./mlflow.db, printing the address of the experiment's runs"
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_cli(lambda: args.func(args))


if __name__ == "__main__":
    main()
