"""Model registry: choose the best model, register it once, and move the champion alias fairly.

The best candidate has the lowest validation bits per char (ties: fewer parameters). It is logged
as a pyfunc model and registered once per distinct weights (a content hash tags each version, so
rerunning with nothing new adds no version). The alias moves only when the candidate beats the
champion on the same test data (same test-split hash); otherwise the champion stays and the
decision says why.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from charlm import checkpoint
from charlm.errors import CharlmError
from charlm.params import RegisterConfig, SamplingOptions
from charlm.tracking import attach_run, store_lock
from charlm.vocab import Vocabulary

TAG_MODEL_SHA = "charlm.model_sha256"
TAG_TEST_SHA = "charlm.test_sha256"
TAG_TEST_BPC = "charlm.test_bpc"
TAG_VAL_BPC = "charlm.val_bpc"
TAG_DECISION = "charlm.decision"


@dataclass(frozen=True)
class Candidate:
    name: str
    model_dir: Path
    val_bpc: float
    test_bpc: float
    num_params: int
    test_sha256: str
    run_id: str | None

    @cached_property
    def model_sha256(self) -> str:
        """Identifies the weights, architecture and vocabulary (not the metrics) of the model."""
        config = checkpoint.read_config(self.model_dir)
        digest = hashlib.sha256(json.dumps([config["model"], config["vocab_hash"]], sort_keys=True).encode())
        digest.update((self.model_dir / checkpoint.MODEL_FILE).read_bytes())
        return digest.hexdigest()


def load_candidate(name: str, model_dir: Path, eval_metrics: Path) -> Candidate:
    try:
        report = json.loads(eval_metrics.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CharlmError(
            f"{eval_metrics}: cannot read evaluation metrics ({err}); run evaluate@{name}"
        ) from None
    config = checkpoint.read_config(model_dir)
    return Candidate(
        name=name,
        model_dir=model_dir,
        val_bpc=float(report["val_bpc"]),
        test_bpc=float(report["test_bpc"]),
        num_params=int(report["num_params"]),
        test_sha256=str(report["test_sha256"]),
        run_id=config.get("mlflow_run_id"),
    )


def pick_best(candidates: list[Candidate]) -> Candidate:
    if not candidates:
        raise CharlmError("no models to register")
    return min(candidates, key=lambda c: (c.val_bpc, c.num_params))


def decide(
    candidate: Candidate, champion_tags: dict[str, str] | None, cfg: RegisterConfig
) -> tuple[bool, str]:
    """Whether the candidate becomes champion, and why."""
    if champion_tags is None:
        return True, "no champion yet: the candidate becomes the first"
    if champion_tags.get(TAG_MODEL_SHA) == candidate.model_sha256:
        return False, "the candidate already is the champion"
    if champion_tags.get(TAG_TEST_SHA) != candidate.test_sha256:
        if cfg.on_new_test_data == "promote":
            return (
                True,
                "the champion was evaluated on other test data; promoted (register.on_new_test_data: promote)",
            )
        return False, (
            "the champion was evaluated on other test data, so the two are not comparable; champion kept"
            " (set register.on_new_test_data: promote to replace it)"
        )
    champion_bpc = float(champion_tags[TAG_TEST_BPC])
    if candidate.test_bpc < champion_bpc:
        return True, f"test bpc {candidate.test_bpc:.4f} beats the champion's {champion_bpc:.4f}"
    return (
        False,
        f"test bpc {candidate.test_bpc:.4f} does not beat the champion's {champion_bpc:.4f}; champion kept",
    )


def _find_version(client: Any, name: str, model_sha: str) -> Any | None:
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get(TAG_MODEL_SHA) == model_sha:
            return version
    return None


def _champion(client: Any, cfg: RegisterConfig) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(cfg.model_name, cfg.alias)
    except MlflowException:
        return None


def example_prompt(model_dir: Path, wanted: str) -> str:
    """`wanted` if the model knows all its characters, else a few characters it does know."""
    vocab = Vocabulary.load(model_dir / checkpoint.VOCAB_FILE)
    return wanted if not vocab.unknown_chars(wanted) else "".join(vocab.itos[1:4])


def log_pyfunc(
    candidate: Candidate, run_id: str, defaults: SamplingOptions, max_request_chars: int, prompt: str
) -> str:
    """Log the candidate as a models-from-code pyfunc in `run_id`; returns its model URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from charlm import serving

    package = Path(serving.__file__).parent
    inputs = Schema(
        [ColSpec("string", "prompt")]
        + [ColSpec(t, n, required=False) for n, t in serving.OPTIONAL_INPUTS.items()]
    )
    signature = ModelSignature(inputs=inputs, outputs=Schema([ColSpec("string")]))
    example = pd.DataFrame(
        [
            {
                "prompt": example_prompt(candidate.model_dir, prompt),
                "max_new_chars": 40,
                "temperature": 0.8,
                "seed": 0,
            }
        ]
    )
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package / "mlflow_model.py"),
            artifacts={serving.MODEL_DIR_ARTIFACT: str(candidate.model_dir)},
            code_paths=[str(package)],
            model_config={"defaults": asdict(defaults), "max_request_chars": max_request_chars},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "torch", "numpy", "pandas", "safetensors", "pyyaml")
    ]


def register(
    client: Any,
    candidate: Candidate,
    cfg: RegisterConfig,
    experiment: str,
    tags: dict[str, str],
    defaults: SamplingOptions,
    max_request_chars: int,
    prompt: str = "ROMEO:",
) -> dict[str, Any]:
    """Register the candidate (once) and move the alias if it wins; returns the decision record."""
    model_sha = candidate.model_sha256
    version = _find_version(client, cfg.model_name, model_sha)
    if version is None:
        import mlflow

        run_id, created = attach_run(
            client, candidate.run_id, experiment, f"{candidate.name} (registration)", tags
        )
        model_uri = log_pyfunc(candidate, run_id, defaults, max_request_chars, prompt)
        if created:
            client.set_terminated(run_id)
        version = mlflow.register_model(model_uri, cfg.model_name, await_registration_for=60)
        for key, value in {
            TAG_MODEL_SHA: model_sha,
            TAG_TEST_SHA: candidate.test_sha256,
            TAG_TEST_BPC: f"{candidate.test_bpc:.6f}",
            TAG_VAL_BPC: f"{candidate.val_bpc:.6f}",
            "charlm.model": candidate.name,
        }.items():
            client.set_model_version_tag(cfg.model_name, version.version, key, value)
        new_version = True
    else:
        new_version = False
    # Read the champion and move the alias as one step: queued experiments register concurrently.
    with store_lock(client.tracking_uri):
        champion = _champion(client, cfg)
        promote, reason = decide(candidate, dict(champion.tags) if champion else None, cfg)
        if promote:
            client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
        client.set_model_version_tag(cfg.model_name, version.version, TAG_DECISION, reason)
    return {
        "candidate": candidate.name,
        "candidate_version": int(version.version),
        "new_version": new_version,
        "candidate_test_bpc": candidate.test_bpc,
        "candidate_val_bpc": candidate.val_bpc,
        "champion_version_before": int(champion.version) if champion else None,
        "champion_test_bpc_before": float(champion.tags[TAG_TEST_BPC])
        if champion and TAG_TEST_BPC in champion.tags
        else None,
        "metric": "test_bpc",
        "promoted": promote,
        "verdict": reason,
        "champion_version": int(version.version) if promote else int(champion.version),
    }
