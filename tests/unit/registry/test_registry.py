"""registry: the best candidate is registered once; `champion` moves only for a fair improvement,
judged on validation data, and never to a model that writes garbage; the test bpc is recorded and
never decides; every version has its card."""

from pathlib import Path
from typing import Any, get_args

import pytest

from charlm.params.serving import Precision
from charlm.registry.card import STEPS
from tests.helpers import SAMPLE_TEXT, SHA_A, SHA_B, SHA_C, register_candidate, saved_candidate

pytestmark = pytest.mark.slow  # a real MLflow store; the rules themselves are in test_decision.py


def champion(client: Any) -> int:
    return int(client.get_model_version_by_alias("charlm", "champion").version)


def test_champion_moves_only_when_beaten_on_the_same_validation_data(
    tmp_path: Path, mlflow_client: Any
) -> None:
    first = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0))
    assert first.promoted and first.version == first.champion_version == 1 and champion(mlflow_client) == 1
    assert "first" in first.verdict and first.version_before is None

    again = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0))
    assert not again.new_version and again.version == 1 and champion(mlflow_client) == 1
    assert len(mlflow_client.search_model_versions("name='charlm'")) == 1  # re-run added nothing

    # A far better test bpc does not help a worse validation bpc: test data never decides.
    worse = register_candidate(mlflow_client, saved_candidate(tmp_path, 2, val_bpc=2.5, test_bpc=0.1))
    assert (
        worse.version == 2 and not worse.promoted and worse.champion_version == champion(mlflow_client) == 1
    )
    assert "val bpc 2.5000 does not beat the champion's 2.0000" in worse.verdict
    tags = mlflow_client.get_model_version("charlm", "2").tags
    assert tags["charlm.decision"] == worse.verdict
    assert tags["charlm.test_bpc"] == "0.100000" and tags["charlm.val_sha256"] == SHA_A  # recorded beside it

    elsewhere = register_candidate(mlflow_client, saved_candidate(tmp_path, 3, val_bpc=0.5, val_sha256=SHA_B))
    assert not elsewhere.promoted and champion(mlflow_client) == 1
    assert "validated on other data" in elsewhere.verdict

    better = register_candidate(mlflow_client, saved_candidate(tmp_path, 4, val_bpc=1.5, test_bpc=3.0))
    assert better.promoted and champion(mlflow_client) == better.version == 4
    assert better.version_before == 1 and "val bpc 1.5000 beats the champion's 2.0000" in better.verdict

    forced = saved_candidate(tmp_path, 3, val_bpc=0.5, val_sha256=SHA_B)
    assert register_candidate(mlflow_client, forced, on_new_val_data="promote").promoted
    assert champion(mlflow_client) == 3


def test_a_model_that_writes_garbage_is_never_the_champion_whatever_its_bpc(
    tmp_path: Path, mlflow_client: Any
) -> None:
    garbage = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=1.0, failed_texts=3))
    assert garbage.version == 1 and not garbage.promoted
    assert "3 of the texts it writes fail the writing judge" in garbage.verdict
    assert mlflow_client.get_model_version("charlm", "1").tags["charlm.writing_failed"] == "3"
    card = mlflow_client.get_model_version("charlm", "1").description
    assert "3 of 24 texts fail" in card and "the first failure: after 'JULIET:' (greedy): '&&&&'" in card

    # A worse model that writes well becomes the champion; settling never picks the better garbage.
    good = register_candidate(mlflow_client, saved_candidate(tmp_path, 2, val_bpc=2.0))
    assert good.promoted and champion(mlflow_client) == good.version == 2
    again = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=1.0, failed_texts=3))
    assert not again.new_version and not again.promoted and champion(mlflow_client) == 2


def test_every_version_carries_a_model_card_and_a_linked_logged_model(
    tmp_path: Path, mlflow_client: Any
) -> None:
    first = register_candidate(
        mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0, test_bpc=2.25), precision="fp32"
    )
    worse = register_candidate(mlflow_client, saved_candidate(tmp_path, 2, val_bpc=2.5), precision="int8")
    card = mlflow_client.get_model_version("charlm", str(first.version)).description
    for expected in (
        "# charlm v1: m1",
        "GRU, 1 x 8 hidden, embedding input (8 wide), dropout 0, weight drop 0",
        "a softmax over 12 characters, `<unk>` among them",
        "`corpus/*.txt`",
        f"| train | `{SHA_C}` |",
        f"| val | `{SHA_A}` |",
        f"| test | `{SHA_B}` |",
        "| this model | 2.0000 | 2.2500 |",
        "| bigram baseline (add-one, train split) | 3.1000 | 3.2000 |",
        "| unigram baseline (add-one, train split) | 3.5000 | 3.6000 |",
        "**Champion** (`@champion`): no champion yet",
        "Prompt `ab`, seed 5, temperature 0.6, top-k 4, top-p 0.95:",
        f"~~~text\nab{SAMPLE_TEXT}\n~~~",  # the generate stage's sample, quoted
        "A request asks for up to 4 texts, prompts of up to 50 characters and 100 characters in all",
        "Prompts are put in NFC, the corpus's Unicode form",
        "Each served step runs in fp32, as the model was scored.",
        'mlflow.pyfunc.load_model("models:/charlm/1")',
        'model.predict([{"prompt": "ab", "length": 200, "seed": 0}])',
        "charlm generate --uri models:/charlm/1",
        "charlm serve --uri models:/charlm/1",
        """-d '{"inputs": [{"prompt": "ab", "length": 200, "seed": 0}]}'""",
    ):
        assert expected in card, expected
    second = mlflow_client.get_model_version("charlm", str(worse.version)).description
    assert "Not the `@champion`: val bpc 2.5000 does not beat the champion's 2.0000" in second
    assert "Each served step runs its recurrent matrices in int8" in second
    # Registered again under other serving params, a version's card still says what it was logged with.
    again = register_candidate(
        mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0), precision="int8", max_request_rows=2
    )
    assert not again.new_version and again.version == first.version
    card = mlflow_client.get_model_version("charlm", str(first.version)).description
    assert "Each served step runs in fp32" in card and "A request asks for up to 4 texts" in card

    logged = mlflow_client.search_logged_models(
        experiment_ids=[mlflow_client.get_experiment_by_name("test").experiment_id]
    )
    metrics = sorted((m.key, m.value) for lm in logged if lm.name == "model" for m in lm.metrics or [])
    assert ("test_bpc", 2.25) in metrics and ("val_bpc", 2.0) in metrics and ("val_bpc", 2.5) in metrics


def test_the_same_weights_on_new_validation_data_are_a_version_of_their_own(
    tmp_path: Path, mlflow_client: Any
) -> None:
    first = register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0, test_bpc=2.2))
    # The same weights, scored again after the held-out splits changed.
    rescored = saved_candidate(tmp_path, 1, val_bpc=2.3, val_sha256=SHA_B, test_bpc=2.1)
    kept = register_candidate(mlflow_client, rescored)
    assert kept.new_version and kept.version == 2 and kept.champion_version == first.version
    assert "validated on other data" in kept.verdict
    version = mlflow_client.get_model_version("charlm", str(kept.version))
    assert version.tags["charlm.val_bpc"] == "2.300000" and version.tags["charlm.val_sha256"] == SHA_B
    assert "| this model | 2.3000 | 2.1000 |" in version.description  # the card says what the tags say
    assert mlflow_client.get_model_version("charlm", "1").tags["charlm.val_bpc"] == "2.000000"  # unchanged

    promoted = register_candidate(mlflow_client, rescored, on_new_val_data="promote")
    assert not promoted.new_version and promoted.version == 2 and promoted.promoted
    assert champion(mlflow_client) == 2
    again = register_candidate(mlflow_client, rescored, on_new_val_data="promote")
    assert again.verdict == "the candidate already is the champion" and not again.promoted


def test_the_card_words_every_precision_a_model_can_serve_in() -> None:
    assert set(STEPS) == set(get_args(Precision))
