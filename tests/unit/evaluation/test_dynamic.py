"""dynamic: a model that learns as it reads scores each segment before learning from it, gets
better at a passage it has read before, and leaves the model as it found it."""

import numpy as np
import pytest
import torch

from charlm.errors import CharlmError
from charlm.evaluation.dynamic import dynamic
from charlm.evaluation.evaluate import evaluate
from charlm.model.network import CharLM
from charlm.params.generation import DynamicConfig, EvaluateConfig
from charlm.params.training import ArchConfig
from tests.helpers import config

CPU = torch.device("cpu")


def settings(**overrides: float) -> DynamicConfig:
    return DynamicConfig.parse(config(EvaluateConfig).dynamic.model_dump() | overrides)


def model() -> CharLM:
    torch.manual_seed(0)
    return CharLM(config(ArchConfig, cell="lstm", embedding_size=8, hidden_size=16, num_layers=1), 12)


def test_a_repeated_passage_reads_better_dynamically_and_the_static_figure_is_evaluate_s() -> None:
    passage = np.random.default_rng(0).integers(1, 12, size=40).astype(np.uint8)
    ids = np.tile(passage, 25)  # 1,000 characters: the same 40, again and again
    lm = model()
    before = [p.detach().clone() for p in lm.parameters()]
    cfg = settings(chars=800, seq_len=20, learning_rate=5.0, decay=0.0)
    reports: list[tuple[int, int]] = []
    static, learning = dynamic(lm, ids, cfg, CPU, on_progress=lambda *r: reports.append(r))
    assert static.chars == learning.chars == 800
    assert reports == [(20 * k, 1600) for k in range(1, 81)]  # both readings, segment by segment
    assert static == evaluate(lm, ids[:801], batch_size=1, seq_len=20, device=CPU)
    assert learning.bpc < static.bpc - 1.0  # it learns the passage it keeps reading
    assert all(torch.equal(p, b) for p, b in zip(lm.parameters(), before, strict=True))
    assert all(p.grad is None for p in lm.parameters()) and lm.training


def test_no_character_is_scored_by_weights_that_saw_it() -> None:
    ids = np.random.default_rng(1).integers(1, 12, size=200).astype(np.uint8)
    lm = model()
    # One segment is scored before any update: dynamically as statically, whatever the step size.
    static, learning = dynamic(lm, ids, settings(chars=20, seq_len=20, learning_rate=10.0, decay=0.0), CPU)
    assert learning == static
    # The second segment is scored by weights that learnt from the first.
    static, learning = dynamic(lm, ids, settings(chars=40, seq_len=20, learning_rate=10.0, decay=0.0), CPU)
    assert learning != static


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_full_decay_forgets_each_update(decay: float) -> None:
    ids = np.tile(np.arange(1, 11, dtype=np.uint8), 20)
    lm = model()
    cfg = settings(chars=150, seq_len=10, learning_rate=0.5, decay=decay)
    static, learning = dynamic(lm, ids, cfg, CPU)
    if decay == 1.0:  # every update is undone before the next segment: the static figure
        assert learning.bpc == pytest.approx(static.bpc, abs=1e-6)
    else:
        assert learning.bpc < static.bpc


def test_a_diverging_learning_rate_is_an_error_naming_it() -> None:
    ids = np.random.default_rng(2).integers(1, 12, size=400).astype(np.uint8)
    lm = model()
    before = [p.detach().clone() for p in lm.parameters()]
    with pytest.raises(CharlmError, match=r"evaluate\.dynamic\.learning_rate"):
        # Past evaluate.dynamic's bound, so built unchecked: the weights overflow to infinities.
        huge = DynamicConfig.model_construct(chars=300, seq_len=10, learning_rate=1e38, decay=0.0)
        dynamic(lm, ids, huge, CPU)
    assert all(torch.equal(p, b) for p, b in zip(lm.parameters(), before, strict=True))
