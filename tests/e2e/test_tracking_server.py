"""A shared MLflow tracking server: `make server` on loopback, the tiny pipeline logging to it over HTTP,
and every result checked through the server's REST API."""

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from charlm.evaluation.report import EvalReport
from charlm.training.outputs import TrainSummary
from tests.helpers import REPO, background_server, charlm_generate, free_port, http_json, run, tiny_overrides

pytestmark = pytest.mark.slow


def test_pipeline_logs_and_registers_on_a_tracking_server(
    workspace: Callable[..., Path], tiny_corpus: Path, tmp_path: Path
) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    make = ["make", "--no-print-directory", "-C", str(REPO), "server"]
    settings = [f"SERVER_DIR={tmp_path / 'server'}", f"SERVER_PORT={port}"]
    with background_server([*make, *settings], tmp_path, f"{server}/health"):
        overrides = tiny_overrides(tiny_corpus)
        overrides["models"] = {"lstm": {"cell": "lstm"}}
        ws = workspace(overrides)
        # Up to `register`: training, evaluation and registration all talk to the server.
        run(["dvc", "repro", "register"], ws, env={"MLFLOW_TRACKING_URI": server})
        assert not (ws / "mlflow.db").exists(), "nothing may be logged to the embedded store"

        def api(endpoint: str, payload: dict | None = None, **query: str) -> dict:
            url = f"{server}/api/2.0/mlflow/{endpoint}" + (f"?{urlencode(query)}" if query else "")
            status, body = http_json(url, payload)
            assert status == 200, (endpoint, body)
            return body

        experiment = api("experiments/get-by-name", experiment_name="charlm")["experiment"]
        # The UI opens a model-training experiment on its runs, not on the GenAI overview.
        kind = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"]
        assert kind == "custom_model_development"
        runs = api("runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        (lstm,) = runs
        assert lstm["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in lstm["data"]["metrics"]}
        evaluated = EvalReport.read(ws / "metrics/eval/lstm.json")
        assert metrics["steps"] == 30 and metrics["test_bpc"] == evaluated.test.bpc
        run_id = lstm["info"]["run_id"]
        history = api("metrics/get-history", run_id=run_id, metric_key="train_loss_nats")["metrics"]
        assert sorted(m["step"] for m in history) == list(range(1, 31))

        artifacts = {f["path"] for f in api("artifacts/list", run_id=run_id, path="metrics/train")["files"]}
        assert artifacts == {"metrics/train/lstm.json"}
        stored = list((tmp_path / "server/artifacts").rglob("lstm.json"))
        assert stored and TrainSummary.read(stored[0]) == TrainSummary.read(ws / "metrics/train/lstm.json")

        version = api("registered-models/alias", name="charlm", alias="champion")["model_version"]
        assert version["version"] == "1" and version["status"] == "READY"
        tags = {t["key"]: t["value"] for t in version["tags"]}
        assert tags["charlm.model"] == "lstm" and tags["charlm.decision"].startswith("no champion yet")
        card = version["description"]  # the model card, markdown
        assert card.startswith("# charlm v1: lstm\n") and "| this model | " in card
        assert "**Champion** (`@champion`): no champion yet" in card and "~~~text\nROMEO:" in card
        # The Models tab: the logged model, linked to its validation and test bpc.
        found = api("logged-models/search", {"experiment_ids": [experiment["experiment_id"]]})["models"]
        (logged,) = found
        assert logged["info"]["model_id"] in version["source"]  # the registered version is this model
        linked = {(m["key"], m["value"]) for m in logged["data"]["metrics"]}
        assert {("val_bpc", evaluated.val.bpc), ("test_bpc", evaluated.test.bpc)} <= linked, linked
        assert tags["charlm.val_bpc"] == f"{evaluated.val.bpc:.6f}"
        charlm_generate("models:/charlm@champion", tmp_path, 10, tracking_uri=server)
