"""registry: the best candidate is registered once; `champion` moves only for a fair improvement,
judged on validation data; the test bpc is recorded and never decides."""

from pathlib import Path
from typing import Any

import pytest
import torch

from charlm.checkpoint import save_model_dir
from charlm.model import CharLM
from charlm.params import GenerateConfig, ModelConfig, RegisterConfig
from charlm.registry import Candidate, Decision, pick_best, register
from charlm.vocab import Vocabulary

VOCAB = Vocabulary.build("abcdefgh \n")
SHA_A, SHA_B = "a" * 64, "b" * 64


def make_candidate(
    root: Path, seed: int, val_bpc: float, val_sha256: str = SHA_A, test_bpc: float = 2.0
) -> Candidate:
    torch.manual_seed(seed)
    model = CharLM(
        ModelConfig(cell="gru", embedding_size=8, hidden_size=8, num_layers=1, vocab_size=len(VOCAB))
    )
    directory = root / f"model{seed}"
    save_model_dir(directory, model, VOCAB, {"name": f"m{seed}"})
    return Candidate(
        f"m{seed}", directory, val_bpc, test_bpc, model.num_parameters(), val_sha256, SHA_B, None
    )


def champion(client: Any) -> int:
    return int(client.get_model_version_by_alias("charlm", "champion").version)


def do_register(client: Any, candidate: Candidate, cfg: RegisterConfig | None = None) -> Decision:
    generate = GenerateConfig(length=20, temperature=0.6, top_k=4, max_request_chars=100)  # not the defaults
    return register(client, candidate, cfg or RegisterConfig(), generate, "test", {})


def test_pick_best_by_val_bpc_then_size(tmp_path: Path) -> None:
    a, b = (
        make_candidate(tmp_path, 1, val_bpc=2.0, test_bpc=2.0),
        make_candidate(tmp_path, 2, 2.5, test_bpc=1.0),
    )
    assert pick_best([a, b]) is a
    small = Candidate("small", a.model_dir, 2.0, 2.0, a.num_params - 1, SHA_A, SHA_B, None)
    assert pick_best([a, small]) is small


@pytest.mark.slow
def test_champion_moves_only_when_beaten_on_the_same_validation_data(
    tmp_path: Path, mlflow_client: Any
) -> None:
    first = do_register(mlflow_client, make_candidate(tmp_path, 1, val_bpc=2.0))
    assert first.promoted and first.version == first.champion == 1 and champion(mlflow_client) == 1
    assert "first" in first.verdict and first.champion_before is None

    again = do_register(mlflow_client, make_candidate(tmp_path, 1, val_bpc=2.0))
    assert not again.new_version and again.version == 1 and champion(mlflow_client) == 1
    assert len(mlflow_client.search_model_versions("name='charlm'")) == 1  # re-run added nothing

    # A far better test bpc does not help a worse validation bpc: test data never decides.
    worse = do_register(mlflow_client, make_candidate(tmp_path, 2, val_bpc=2.5, test_bpc=0.1))
    assert worse.version == 2 and not worse.promoted and worse.champion == champion(mlflow_client) == 1
    assert "val bpc 2.5000 does not beat the champion's 2.0000" in worse.verdict
    tags = mlflow_client.get_model_version("charlm", "2").tags
    assert tags["charlm.decision"] == worse.verdict
    assert tags["charlm.test_bpc"] == "0.100000" and tags["charlm.val_sha256"] == SHA_A  # recorded beside it

    elsewhere = do_register(mlflow_client, make_candidate(tmp_path, 3, val_bpc=0.5, val_sha256=SHA_B))
    assert not elsewhere.promoted and champion(mlflow_client) == 1
    assert "validated on other data" in elsewhere.verdict

    better = do_register(mlflow_client, make_candidate(tmp_path, 4, val_bpc=1.5, test_bpc=3.0))
    assert better.promoted and champion(mlflow_client) == better.version == 4
    assert better.champion_before == 1 and "val bpc 1.5000 beats the champion's 2.0000" in better.verdict

    forced = do_register(
        mlflow_client,
        make_candidate(tmp_path, 3, val_bpc=0.5, val_sha256=SHA_B),
        RegisterConfig(on_new_val_data="promote"),
    )
    assert forced.promoted and champion(mlflow_client) == 3
