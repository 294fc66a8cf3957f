"""What tests share besides fixtures: running commands as a user would, test workspaces, servers on
loopback, and small models to generate from.

Tests start from the configuration users run and override a few sizes, so they exercise it.
"""

import base64
import contextlib
import copy
import csv
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def tiny_overrides(corpus: Path) -> dict[str, Any]:
    """Overrides that make the real pipeline run in seconds on a local corpus file. Thirty steps
    make a model that writes half-words, which the writing judge rightly fails (4-10 bits at the
    worst window against the validation split's 2.4): its margin lets such a model be the champion,
    so the tiny pipeline still shows registration; what the judge fails is tested with its own margin."""
    return {
        "fetch": {"source": "local", "path": str(corpus), "sha256": None},
        "prepare": {"include": ["*.txt"]},
        "evaluate": {"writing": {"margin_bits": 12.0}},
        "generate": {"length": 100},
        # The shared `model`'s size; the lstm's head adaptive over the corpus's ~40 characters.
        "models": {"rnn": {"cell": "rnn", "head_cutoffs": []}, "lstm": {"cell": "lstm"}},
        "arch": {"embedding_size": 16, "hidden_size": 32, "head_cutoffs": [12, 24]},
        "train": {
            "seq_len": 32,
            "batch_size": 8,
            "max_steps": 30,
            "warmup_steps": 5,
            "eval_interval": 10,
            "checkpoint_interval": 10,
        },
    }


def project_env(**extra: str) -> dict[str, str]:
    """This environment with the project's interpreter and tools first on PATH, and `extra`."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def run(cmd: list[str], cwd: Path, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command with the project's environment first on PATH, capturing text output."""
    env = project_env(**kwargs.pop("env", {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def run_queue(
    ws: Path, count: int, jobs: int, env: dict[str, str] | None = None, timeout: float = 400
) -> None:
    """Run DVC's queue of `count` experiments in `ws` with `jobs` workers, and wait for all of them to
    succeed. `dvc exp run --run-all` would follow the logs as well, and that follower has been seen
    to hang after every experiment had finished.

    `dvc queue start` forks a keeper per worker that holds the command's stdout until its worker
    exits, so its output goes to a file: read through a pipe, the command would last as long as the
    workers, and a worker that never exits would hang the test past every deadline. Waiting watches
    the experiments' git refs, which cost nothing to list, and asks `dvc queue status` (a second of
    CPU each time, taken from the experiments) only now and then for failures. The workers are
    killed at the end whatever happened, so none outlives its test."""
    deadline = time.monotonic() + timeout

    def status() -> str:
        return run(["dvc", "queue", "status"], ws).stdout

    def finished(text: str) -> int:
        return text.count("Success") + text.count("Failed")

    try:
        with tempfile.TemporaryFile("w+") as out:
            start = ["dvc", "queue", "start", "-j", str(jobs)]
            queue_env = project_env(**(env or {}))
            started = subprocess.run(start, cwd=ws, env=queue_env, stdout=out, stderr=out, timeout=120)
            out.seek(0)
            assert started.returncode == 0, f"{start} exited {started.returncode}:\n{out.read()}"
        polls = 0
        while _exp_refs(ws) < count:
            assert time.monotonic() < deadline, f"the queue did not finish within {timeout} s:\n{status()}"
            polls += 1
            if polls % 15 == 0 and "Failed" in (text := status()):
                break
            time.sleep(1)
        while finished(text := status()) < count and "Failed" not in text:
            assert time.monotonic() < deadline, f"the queue did not finish within {timeout} s:\n{text}"
            time.sleep(1)
        failed = [line.split()[0] for line in text.splitlines() if "Failed" in line]
        logs = "".join(run(["dvc", "queue", "logs", task], ws, check=False).stdout[-3000:] for task in failed)
    finally:
        _kill_queue_workers(ws)
    assert text.count("Success") == count, text + logs


def _kill_queue_workers(ws: Path) -> None:
    """Kill the DVC queue's workers of `ws` with everything they started: each worker's keeper made
    itself a process group and records its worker's pid, and a return code once the worker ended."""
    for info in (ws / ".dvc" / "tmp" / "exps").rglob("dvc-exp-worker-*.json"):
        try:
            worker = json.loads(info.read_text())
        except ValueError:  # being rewritten as its worker ends
            continue
        if worker["returncode"] is None:
            with contextlib.suppress(ProcessLookupError):  # it ended since
                os.killpg(os.getpgid(worker["pid"]), signal.SIGKILL)


def _exp_refs(ws: Path) -> int:
    """How many experiments the repository holds (each is a ref under refs/exps)."""
    return len(run(["git", "for-each-ref", "refs/exps"], ws).stdout.splitlines())


def experiments(ws: Path) -> dict[str, dict[str, str]]:
    """`dvc exp show`'s experiments of the workspace's commit, by name: each a row of its columns."""
    table = csv.DictReader(io.StringIO(run(["dvc", "exp", "show", "--csv"], ws).stdout))
    return {row["Experiment"]: row for row in table if row["Experiment"]}


def git_commit(ws: Path, message: str) -> None:
    """Commit everything in a test workspace (with a throwaway identity)."""
    run(["git", "add", "-A"], ws)
    identity = ["-c", "user.name=charlm tests", "-c", "user.email=tests@charlm.invalid"]
    run(["git", *identity, "commit", "-qm", message], ws)


def charlm_generate(uri: str, cwd: Path, length: int, **env: str) -> str:
    """`charlm generate` from a model directory or a registry URI (with `env`, e.g. its tracking
    URI and credentials), with unpickling forbidden."""
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    cmd = [
        "charlm",
        "generate",
        "--uri",
        uri,
        "--prompt",
        "ROMEO:",
        "--length",
        str(length),
        "--seed",
        "1",
    ]
    text = run(cmd, cwd, env=env).stdout
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) == len("ROMEO:") + length, text
    return text


def start(cmd: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a command in the background with the project's environment, discarding its output."""
    return subprocess.Popen(
        cmd, cwd=cwd, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def peak_rss(cmd: list[str], cwd: Path) -> int:
    """Run `cmd`; the most memory one of its processes held at once, in bytes: the kernel's
    high-water mark of the resident set, over `cmd` and every process it waited for."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True);"
        " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    return int(run([sys.executable, "-c", probe, *cmd], cwd).stdout.split()[-1]) * 1024


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until `path` exists (say, a first checkpoint) while `proc` still runs."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)


def free_port() -> int:
    """A loopback port that nothing listens on (free when asked; tests use it at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def background_server(
    cmd: list[str], cwd: Path, ready_url: str, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run a server (with `env` added to this environment) in its own process group until
    `ready_url` answers; stop the group after. If it exits or never answers, the failure shows
    the end of its output."""
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=project_env(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def output() -> str:
            log.seek(0)
            return log.read()[-3000:]

        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(ready_url, timeout=2):
                        break
                except OSError:
                    assert server.poll() is None, f"{cmd[:3]} exited with {server.returncode}:\n{output()}"
                    assert time.monotonic() < deadline, f"{ready_url} silent for {timeout} s:\n{output()}"
                    time.sleep(0.5)
            yield
        finally:
            if server.poll() is not None:  # it died under the test: say why, beside the test's failure
                print(f"{cmd[:3]} exited with {server.returncode} while in use:\n{output()}", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


@contextlib.contextmanager
def tracking_server(root: Path, *settings: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`make server` on a free loopback port, its files under `root`, with extra make `settings`
    (`SERVER_BACKEND=...`, `SERVER_OPTS=...`) and `env`; yields its address."""
    port = free_port()
    make = ["make", "--no-print-directory", "-C", str(REPO), "server", f"SERVER_PORT={port}"]
    address = f"http://127.0.0.1:{port}"
    command = [*make, f"SERVER_DIR={root}", *settings]
    with background_server(command, root.parent, f"{address}/health", env=env):
        yield address


def http_call(
    url: str, payload: Any = None, timeout: float = 60, auth: tuple[str, str] | None = None
) -> tuple[int, Any, Any]:
    """GET `url` (or POST `payload` as JSON), as user `auth` (name, password) if given: the status,
    the body (decoded JSON, or text when it is not JSON) and the headers."""
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, data, headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        try:
            return err.code, json.loads(body or "{}"), err.headers
        except json.JSONDecodeError:
            return err.code, body, err.headers


def sse_events(url: str, payload: Any) -> Iterator[tuple[str, Any]]:
    """POST to a stream and yield its server-sent events (name, data) as they arrive."""
    post = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=60) as response:
        name = "text"
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                yield name, json.loads(line.removeprefix("data: "))
                name = "text"


def http_json(url: str, payload: Any = None, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    """GET `url` (or POST `payload` as JSON), as user `auth` if given: the status and the body."""
    status, body, _ = http_call(url, payload, auth=auth)
    return status, body


def make_workspace(root: Path, overrides: dict[str, Any]) -> Path:
    """Make a git + DVC repository at `root` holding the pipeline (dvc.yaml, stages, library) and
    the repository's params with `overrides`; `models` in them replaces the whole section."""
    root.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", root)
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    if "models" in overrides:
        params["models"] = overrides["models"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db\n/mlflow.db.lock\n")
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    shutil.copytree(REPO / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    return root


def copy_workspace(source: Path, target: Path, **train: Any) -> Path:
    """A copy of the workspace `source` at `target`, with those `train` settings."""
    shutil.copytree(source, target, symlinks=True)
    shutil.rmtree(target / ".dvc" / "tmp", ignore_errors=True)  # DVC's state for the original path
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["train"].update(train)
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return target


@contextlib.contextmanager
def tracking_env_kept() -> Iterator[None]:
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI; restore the variables afterwards."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store(uri: str) -> Any:
    """A client on the store at `uri`, for runs and registry alike: MLflow's process-wide registry
    URI, which an earlier test's `connect` set to its own store, must not apply."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def workspace_store(ws: Path) -> Any:
    """A client on a workspace's own mlflow.db."""
    return store(f"sqlite:///{ws / 'mlflow.db'}")


def runs_by_name(ws: Path) -> dict[str, Any]:
    """A workspace's runs in its charlm experiment, by run name."""
    client = workspace_store(ws)
    experiment = client.get_experiment_by_name("charlm")
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


Workspace = Callable[..., Path]  # conftest's lstm_workspace: a copy of a workspace with `train` settings


# -- configurations and small models -----------------------------------------------------------
SMALL_TEXT = "abcdefgh \n\u00e9"  # the small models' training text (NFC): a vocabulary of 12 with <unk>
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
R = TypeVar("R")


def config(record: type[R], **overrides: Any) -> R:
    """`record` (a params section's record, or the sampling options) as the repository's
    params.yaml states it, with `overrides`: tests start from the configuration users run."""
    from charlm.params.generation import SamplingOptions
    from charlm.params.pipeline import Params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if record is SamplingOptions:
        values = {key: raw["generate"][key] for key in SamplingOptions.model_fields}
    else:
        (section,) = [name for name, field in Params.model_fields.items() if field.annotation is record]
        values = raw[section]
    return record.parse(values | overrides)  # type: ignore[attr-defined, no-any-return]


def spec(name: str = "lstm", **overrides: Any) -> Any:
    """A `models:` entry: the shared `arch` and `train` sections with `overrides`."""
    from charlm.params.training import ModelSpec

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return ModelSpec.parse({"name": name, "arch": raw["arch"], "train": raw["train"]} | overrides)


def small_vocab() -> Any:
    from charlm.data.vocab import Vocabulary

    return Vocabulary.build(SMALL_TEXT, unicode_form="NFC")


def tiny_model(
    cell: str,
    num_layers: int = 2,
    hidden_size: int = 16,
    head_cutoffs: tuple[int, ...] = (),
    feedforward: int = 0,
) -> Any:
    """A seeded, untrained CharLM over `small_vocab()`; `head_cutoffs` make its head adaptive,
    `feedforward` adds the block before it."""
    import torch

    from charlm.model.network import CharLM
    from charlm.params.training import ArchConfig

    torch.manual_seed(0)
    model_config = config(
        ArchConfig,
        cell=cell,
        embedding_size=8,
        hidden_size=hidden_size,
        num_layers=num_layers,
        head_cutoffs=head_cutoffs,
        feedforward=feedforward,
    )
    model = CharLM(model_config, len(small_vocab())).eval()
    model.head.start_at(small_vocab().counts)  # an adaptive head ranks by them
    return model


def step_counter(batcher: Any) -> Callable[[], int]:
    """How many model steps `batcher` takes from now on: rows that share a step are generated
    together. Counts the calls its batching thread makes to its decoder's own `step`."""
    decoder, steps = batcher.decoder, [0]
    step = decoder.step

    def counted() -> None:
        steps[0] += 1
        step()

    decoder.step = counted
    return lambda: steps[0]


def eval_report(
    val_bpc: float,
    test_bpc: float = 2.0,
    val_sha256: str = SHA_A,
    num_params: int = 1000,
    failed_texts: int = 0,
    **fields: Any,
) -> Any:
    """An evaluation report with the given figures (the rest fixed); `failed_texts` of its 24
    judged texts fail."""
    from charlm.evaluation.report import EvalReport

    def split(bpc: float, sha256: str) -> dict[str, Any]:
        return {"loss_nats": bpc * math.log(2), "accuracy": 0.5, "chars": 1000, "sha256": sha256}

    return EvalReport.parse(
        {
            "name": "m",
            "model_dir": "models/m",
            "val": split(val_bpc, val_sha256),
            "test": split(test_bpc, SHA_B),
            "writing": {
                "texts": 24,
                "failed": failed_texts,
                "worst_window_bits": 20.0 if failed_texts else 5.0,
                "val_worst_window_bits": 6.5,
                "limit_bits": 7.5,
                "mean_bits": 3.0,
                "val_mean_bits": 2.9,
                "first_failure": "after 'JULIET:' (greedy): '&&&&'" if failed_texts else None,
            },
            "dynamic_static": {"loss_nats": test_bpc * math.log(2), "accuracy": 0.5, "chars": 1000},
            "dynamic": {"loss_nats": (test_bpc - 0.1) * math.log(2), "accuracy": 0.5, "chars": 1000},
            "num_params": num_params,
            "mlflow_run_id": "",
            "mlflow_run": "training",
        }
        | fields
    )


def data_report() -> Any:
    """A data report whose training split is SHA_C, with baselines on the held-out splits."""
    from charlm.data.report import DataReport
    from charlm.params.data import FetchConfig

    splits = {
        split: {"chars": 1000, "sha256": sha, "oov_rate": 0.0}
        for split, sha in [("train", SHA_C), ("val", SHA_A), ("test", SHA_B)]
    }
    baselines = {"unigram": {"val": 3.5, "test": 3.6}, "bigram": {"val": 3.1, "test": 3.2}}
    corpus = config(FetchConfig, source="local", path="corpus/*.txt", sha256=None).describe()
    return DataReport.parse(
        {"corpus": corpus, "vocab_size": len(SMALL_TEXT) + 1, "splits": splits, "baselines": baselines}
    )


def saved_candidate(
    root: Path,
    seed: int,
    val_bpc: float,
    val_sha256: str = SHA_A,
    test_bpc: float = 2.0,
    failed_texts: int = 0,
    head_cutoffs: tuple[int, ...] = (),
) -> Any:
    """A model directory of distinct (seeded) weights under `root`, as a registry candidate;
    `failed_texts` of what it writes fail the writing judge; `head_cutoffs` make its head adaptive."""
    import torch

    from charlm.model.directory import save_model_dir
    from charlm.model.network import CharLM
    from charlm.params.training import ArchConfig

    torch.manual_seed(seed)
    vocab = small_vocab()
    model_config = config(
        ArchConfig, cell="gru", embedding_size=8, hidden_size=8, num_layers=1, head_cutoffs=head_cutoffs
    )
    model = CharLM(model_config, len(vocab))
    model.head.start_at(vocab.counts)
    directory = root / f"model{seed}"
    save_model_dir(directory, model, vocab, f"m{seed}")
    fields = {"name": f"m{seed}", "model_dir": str(directory)}
    figures = eval_report(val_bpc, test_bpc, val_sha256, model.num_parameters(), failed_texts, **fields)
    return figures


SAMPLE_TEXT = "a bad cafe\nhead"


SMALL_LIMITS = {"max_request_rows": 4, "max_prompt_chars": 50, "max_request_chars": 100}


def register_candidate(
    client: Any,
    candidate: Any,
    on_new_val_data: str = "keep",
    model_name: str = "charlm",
    experiment: str = "test",
    min_improvement_bpc: float | None = None,
    **limits: Any,
) -> Any:
    """Register `candidate` in `client`'s registry as the register stage does, with a sample, sampling
    defaults and serving limits (`SMALL_LIMITS`, then `limits`) that are not the repository's."""
    from charlm.generation.samples import Sample
    from charlm.params.generation import SamplingOptions
    from charlm.params.registry import RegistryConfig
    from charlm.params.serving import LimitsConfig
    from charlm.registry.register import register
    from charlm.serving.interface import ServedSettings
    from charlm.tracking.runs import StageTracking

    served = ServedSettings(
        sampling=config(SamplingOptions, length=20, temperature=0.6, top_k=4, seed=None),
        limits=config(LimitsConfig, **SMALL_LIMITS | limits),
    )
    margin = {} if min_improvement_bpc is None else {"min_improvement_bpc": min_improvement_bpc}
    cfg = config(RegistryConfig, on_new_val_data=on_new_val_data, model_name=model_name, **margin)
    sample = Sample(prompt="ab", seed=5, temperature=0.6, text=SAMPLE_TEXT)
    return register(StageTracking(client, experiment, {}), candidate, cfg, data_report(), sample, served)
