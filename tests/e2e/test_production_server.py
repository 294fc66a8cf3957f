"""The production tracking server, run for real: `make server` on a PostgreSQL backend, artifacts
served by the server, behind MLflow's basic-auth app. The tiny pipeline logs and registers through
it with a writer's credentials and every result is checked through the REST API; a request without
credentials is refused; a reader loads the champion but can neither move it nor delete a version.
Users are created as docs/team.md shows."""

import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from charlm.evaluation.report import EvalReport
from charlm.training.outputs import TrainSummary
from tests.helpers import (
    charlm_generate,
    copy_workspace,
    http_json,
    register_candidate,
    run,
    saved_candidate,
    store,
)
from tests.team_server import ADMIN, READER, SECOND_WRITER, WRITER, TeamServer, User, acting_as

pytestmark = pytest.mark.slow

MODEL = "charlm"


@pytest.fixture(scope="module")
def registered(team_server: TeamServer, lstm_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny lstm pipeline run up to `register` with the writer's credentials; then the admin
    gives the reader READ on the registered model and on the experiment whose logged model holds
    its weights, and nothing else."""
    import mlflow.server

    ws = copy_workspace(lstm_data, tmp_path_factory.mktemp("writer") / "ws")
    env = {"MLFLOW_TRACKING_URI": team_server.address, **WRITER.env}
    run(["dvc", "repro", "register"], ws, env=env)
    with acting_as(ADMIN):
        users = mlflow.server.get_app_client("basic-auth", tracking_uri=team_server.address)
        experiment = store(team_server.address).get_experiment_by_name("charlm")
        users.grant_user_permission(READER.name, "experiment", experiment.experiment_id, "READ")
        users.grant_user_permission(READER.name, "registered_model", MODEL, "READ")
    return ws


def test_the_pipeline_logs_and_registers_with_a_writers_credentials(
    team_server: TeamServer, registered: Path
) -> None:
    assert not (registered / "mlflow.db").exists(), "nothing may be logged to the embedded store"

    def api(endpoint: str, payload: dict | None = None, **query: str) -> dict:
        return team_server.api(endpoint, payload, WRITER, **query)

    experiment = api("experiments/get-by-name", experiment_name="charlm")["experiment"]
    # The UI opens a model-training experiment on its runs, not on the GenAI overview.
    kind = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    query = {"experiment_ids": [experiment["experiment_id"]], "filter": "attributes.run_name = 'lstm'"}
    (lstm,) = api("runs/search", query)["runs"]  # the training run
    assert lstm["info"]["status"] == "FINISHED" and lstm["info"]["user_id"] == WRITER.name
    metrics = {m["key"]: m["value"] for m in lstm["data"]["metrics"]}
    evaluated = EvalReport.read(registered / "metrics/eval/lstm.json")
    assert metrics["steps"] == 30 and metrics["test_bpc"] == evaluated.test.bpc
    run_id = lstm["info"]["run_id"]
    history = api("metrics/get-history", run_id=run_id, metric_key="train_loss_nats")["metrics"]
    assert sorted(m["step"] for m in history) == list(range(1, 31))

    # Artifacts go through the server to its own store: clients hold no storage credentials.
    artifacts = {f["path"] for f in api("artifacts/list", run_id=run_id, path="metrics/train")["files"]}
    assert artifacts == {"metrics/train/lstm.json"}
    stored = list((team_server.root / "artifacts").rglob("lstm.json"))
    assert stored and TrainSummary.read(stored[0]) == TrainSummary.read(
        registered / "metrics/train/lstm.json"
    )

    version = api("registered-models/alias", name=MODEL, alias="champion")["model_version"]
    assert version["version"] == "1" and version["status"] == "READY"
    tags = {t["key"]: t["value"] for t in version["tags"]}
    assert tags["charlm.name"] == "lstm" and tags["charlm.decision"].startswith("no champion yet")
    card = version["description"]  # the model card, markdown
    assert card.startswith("# charlm v1: lstm\n") and "| this model | " in card
    assert "**Champion** (`@champion`): no champion yet" in card and "~~~text\nROMEO:" in card
    # The Models tab: the logged model, linked to its validation and test bpc.
    found = api("logged-models/search", {"experiment_ids": [experiment["experiment_id"]]})["models"]
    (logged,) = [m for m in found if m["info"]["model_id"] in version["source"]]  # the version's model
    linked = {(m["key"], m["value"]) for m in logged["data"]["metrics"]}
    assert {("val_bpc", evaluated.val.bpc), ("test_bpc", evaluated.test.bpc)} <= linked, linked
    assert tags["charlm.val_bpc"] == f"{evaluated.val.bpc:.6f}"
    # Its environment, rewritten through the server after logging, asks for Python's minor version.
    (env,) = (team_server.root / "artifacts").rglob("python_env.yaml")
    assert yaml.safe_load(env.read_text())["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.parametrize("user", [None, User("writer", "not-the-password"), User("nobody", "x")])
def test_a_call_without_valid_credentials_is_refused(
    team_server: TeamServer, registered: Path, user: User | None
) -> None:
    calls = [
        ("experiments/get-by-name", None, {"experiment_name": "charlm"}),
        ("experiments/search", {"max_results": 10}, {}),
        ("registered-models/alias", None, {"name": MODEL, "alias": "champion"}),
        ("registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}, {}),
        ("experiments/create", {"name": "intruder"}, {}),
    ]
    for endpoint, payload, query in calls:
        url = f"{team_server.address}/api/2.0/mlflow/{endpoint}" + (f"?{urlencode(query)}" if query else "")
        status, body = http_json(url, payload, auth=user.auth if user else None)
        assert status == 401, (endpoint, status, body)


def test_a_reader_loads_the_champion_but_cannot_move_it_or_delete_a_version(
    team_server: TeamServer, registered: Path, tmp_path: Path
) -> None:
    from mlflow.exceptions import MlflowException

    charlm_generate(
        f"models:/{MODEL}@champion", tmp_path, 10, MLFLOW_TRACKING_URI=team_server.address, **READER.env
    )
    with acting_as(READER):
        client = store(team_server.address)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        attempts = {
            "set the alias": lambda: client.set_registered_model_alias(MODEL, "champion", champion.version),
            "remove the alias": lambda: client.delete_registered_model_alias(MODEL, "champion"),
            "delete a version": lambda: client.delete_model_version(MODEL, champion.version),
            "tag a version": lambda: client.set_model_version_tag(
                MODEL, champion.version, "charlm.name", "x"
            ),
        }
        for what, attempt in attempts.items():
            with pytest.raises(MlflowException, match="Permission denied") as refused:
                attempt()
            assert refused.value.get_http_status_code() == 403, what
    # Nothing moved: the writer still sees the champion, as registered.
    version = team_server.api("registered-models/alias", user=WRITER, name=MODEL, alias="champion")[
        "model_version"
    ]
    assert version["version"] == champion.version
    assert {t["key"]: t["value"] for t in version["tags"]}["charlm.name"] == "lstm"


def test_a_second_writer_with_edit_and_manage_registers_through_the_same_server(
    team_server: TeamServer, registered: Path, tmp_path: Path
) -> None:
    import mlflow.server

    from charlm.tracking.store import connect

    with acting_as(ADMIN):
        users = mlflow.server.get_app_client("basic-auth", tracking_uri=team_server.address)
        experiment = connect(team_server.address).get_experiment_by_name("charlm")
        users.grant_user_permission(SECOND_WRITER.name, "experiment", experiment.experiment_id, "EDIT")
        users.grant_user_permission(SECOND_WRITER.name, "registered_model", MODEL, "MANAGE")
    with acting_as(SECOND_WRITER):
        # Validated on other data than the champion, so it is registered but not compared.
        candidate = saved_candidate(tmp_path, seed=7, val_bpc=1.0)
        decision = register_candidate(
            connect(team_server.address), candidate, model_name=MODEL, experiment="charlm"
        )
    assert decision.new_version and not decision.promoted, decision
    version = team_server.api("model-versions/get", user=READER, name=MODEL, version=str(decision.version))
    tags = {t["key"]: t["value"] for t in version["model_version"]["tags"]}
    assert tags["charlm.decision"].startswith("the champion was validated on other data"), tags
