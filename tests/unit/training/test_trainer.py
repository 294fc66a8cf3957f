"""trainer: schedule, batching, learning, NaN handling and bit-exact resume (in process)."""

import itertools
import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from charlm.data.streams import Batches
from charlm.errors import TrainingInterrupted
from charlm.generation.decoder import generate
from charlm.model.directory import load_model_dir
from charlm.model.network import CharLM
from charlm.params.generation import SamplingOptions
from charlm.params.training import ArchConfig, ModelSpec, TrainConfig
from charlm.tracking.runs import DatasetRef, StageTracking
from charlm.training.job import TrainJob, train_model
from charlm.training.outputs import TrainOutputs, TrainSummary
from charlm.training.recipe import in_average, lr_at, make_optimizer
from charlm.training.state import STATE_FILE, TrainData, read_state
from charlm.training.trainer import Trainer, TrainingDiverged
from tests.helpers import config, spec

TINY = {
    **{"cell": "lstm", "embedding_size": 16, "hidden_size": 32, "num_layers": 2, "dropout": 0.1},
    **{"batch_size": 8, "seq_len": 32, "learning_rate": 1e-2, "warmup_steps": 5, "max_steps": 40},
    **{"eval_interval": 10, "checkpoint_interval": 10, "device": "cpu", "precision": "fp32"},
}
TINY_MODEL = config(ArchConfig, **{k: v for k, v in TINY.items() if k in ArchConfig.model_fields})


def tiny_run(name: str = "lstm", **train: Any) -> ModelSpec:
    return spec(name, **TINY | train)


def outputs(root: Path, name: str = "lstm") -> TrainOutputs:
    return TrainOutputs(
        model_dir=root / "models" / name,
        checkpoint_dir=root / "checkpoints" / name,
        metrics=root / "metrics" / f"{name}.json",
        train_curve=root / "plots" / "train" / f"{name}.csv",
        val_curve=root / "plots" / "val" / f"{name}.csv",
    )


def train(root: Path, data: TrainData, client: Any, run: ModelSpec) -> TrainSummary:
    datasets = [DatasetRef(split, sha, f"{split}.npy") for split, sha in data.sha256.items()]
    job = TrainJob(run, data, outputs(root, run.name), datasets, "a generated play")
    return train_model(job, StageTracking(client, "test", {"t": "1"}))


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Deliver SIGTERM to this process during `step`: the loop checkpoints after it and stops."""
    original = Trainer.train_step

    def step_then_signal(self: Trainer, at: int) -> float:
        if at == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, at)

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)


def test_lr_schedule_warms_up_then_decays_to_floor() -> None:
    cfg = config(TrainConfig, learning_rate=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg, 0.0) == pytest.approx(0.1)
    assert lr_at(9, cfg, 0.0) == pytest.approx(1.0)
    assert lr_at(110, cfg, 0.0) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg, 0.0) for s in range(10, 110)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_with_a_time_budget_the_schedule_decays_over_the_seconds_or_the_steps_whichever_run_out() -> None:
    cfg = config(TrainConfig, learning_rate=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(5, cfg, 0.99) == pytest.approx(0.6)  # the warmup counts steps
    assert lr_at(10, cfg, 0.5) == pytest.approx(0.55)  # half the seconds: half the decay
    assert lr_at(60, cfg, 0.1) == pytest.approx(0.55)  # half the steps, first
    assert lr_at(20, cfg, 1.0) == lr_at(20, cfg, 5.0) == pytest.approx(0.1)


def test_the_weights_average_over_the_last_part_of_the_schedule_in_steps_or_seconds() -> None:
    cfg = config(TrainConfig, warmup_steps=10, max_steps=110, average_last=0.2)
    assert [s for s in range(110) if in_average(s, cfg, 0.0)] == list(range(90, 110))
    assert in_average(20, cfg, 0.8) and not in_average(20, cfg, 0.79)  # or of the time budget
    assert not in_average(5, cfg, 0.99)  # never during the warmup
    assert not any(in_average(s, cfg.model_copy(update={"average_last": 0.0}), 1.0) for s in range(110))


class Clock:
    """A clock for the trainer that moves only when the test says: a step takes 1 s, a
    validation 3 s (or `validation_s`), whatever this machine's speed."""

    def __init__(self, validation_s: float = 3.0) -> None:
        self.now, self.validation_s = 0.0, validation_s

    def __call__(self) -> float:
        return self.now

    def timing(
        self, trainer: Trainer, interrupt_at: int | None = None, signals: list[int] | None = None
    ) -> None:
        step, validate = trainer.train_step, trainer.validate

        def timed_step(at: int) -> float:
            self.now += 1.0
            if at == interrupt_at and signals is not None:
                signals.append(signal.SIGTERM)
            return step(at)

        def timed_validate() -> tuple[float, float]:
            self.now += self.validation_s
            return validate()

        trainer.clock = self  # type: ignore[assignment]
        trainer.train_step = timed_step  # type: ignore[method-assign]
        trainer.validate = timed_validate  # type: ignore[method-assign]


def test_a_time_budget_ends_the_run_in_time_with_a_last_validation_and_resumes_the_same_way(
    tmp_path: Path, tiny_data: TrainData
) -> None:
    run = tiny_run(max_steps=1000, warmup_steps=1, eval_interval=4, max_time_s=10.5)

    def trained(root: Path, interrupt_at: int | None = None) -> Trainer:
        clock, signals = Clock(), []
        trainer = Trainer(run, tiny_data, root)
        clock.timing(trainer, interrupt_at, signals)
        if interrupt_at is not None:
            with pytest.raises(TrainingInterrupted):
                trainer.fit(None, root / "best", signals, lambda *_: None)
            state = read_state(root / STATE_FILE)
            assert state is not None and state.loop.steps == interrupt_at + 1
            trainer = Trainer(run, tiny_data, root, state=state)
            assert trainer.time_spent == state.loop.wall_time_s / 10.5 == (interrupt_at + 1) / 10.5
            clock.timing(trainer)
        trainer.fit(None, root / "best", [], lambda *_: None)
        return trainer

    whole = trained(tmp_path / "whole")
    loop = whole.loop
    # Steps 1-4 and a validation take 7 s; after step 5 (8 s) the next validation (3 s) would pass
    # 10.5 s: step 5 is the last, validated, and the run ends at 11 s, 995 steps before max_steps.
    assert (loop.steps, loop.wall_time_s, loop.finished) == (5, 11.0, True)
    assert [point[0] for point in loop.history["val"]] == [4, 5]
    lrs = [point[2] for point in loop.history["train"]]
    # Rank 0's share of the budget at each step; after the validation, of the 7.5 s it leaves.
    assert lrs == [*(lr_at(step, run.train, step / 10.5) for step in range(4)), lr_at(4, run.train, 7 / 7.5)]
    assert all(a > b for a, b in itertools.pairwise(lrs[1:]))
    resumed = trained(tmp_path / "resumed", interrupt_at=2)
    assert resumed.loop.history == loop.history and resumed.loop.wall_time_s == loop.wall_time_s


def test_a_time_budget_keeps_the_last_validation_in_reserve_and_ends_with_its_schedule_finished(
    tmp_path: Path, tiny_data: TrainData
) -> None:
    # Validations (6 s) longer than the averaged quarter of the budget (5 s): measured against the
    # whole budget, the schedule would stop at 65% and never average.
    run = tiny_run(max_steps=1000, warmup_steps=1, eval_interval=4, max_time_s=20.0, average_last=0.25)
    trainer = Trainer(run, tiny_data, tmp_path)
    Clock(validation_s=6.0).timing(trainer)
    loop = trainer.fit(None, tmp_path / "best", [], lambda *_: None)
    # With 6 s in reserve, 14 s are usable: steps 1-4 and a validation spend 10 of them, steps 5-8
    # the rest, and the run ends on its budget with the reserved validation.
    assert (loop.steps, loop.wall_time_s, loop.validation_s) == (8, 20.0, 6.0)
    assert loop.averaged_steps == 3  # steps 6-8, begun at 11/14, 12/14 and 13/14 of the time
    assert Trainer(tiny_run(), tiny_data, tmp_path / "untimed").share_of_budget(1e9) == 0.0  # no budget


def test_optimizer_takes_its_settings_from_the_train_section() -> None:
    cfg = config(TrainConfig, learning_rate=0.5, weight_decay=0.2, beta1=0.8, beta2=0.95)
    optimizer = make_optimizer(CharLM(TINY_MODEL, 10), cfg)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0  # biases are not decayed
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert decay["betas"] == (0.8, 0.95) and decay["lr"] == 0.5


def test_batches_are_streams_with_shifted_targets() -> None:
    ids = np.arange(100, dtype=np.uint8)
    batches = Batches(ids, batch_size=4, seq_len=5, device=torch.device("cpu"))
    assert batches.steps_per_epoch == 4  # streams of 25: 24 targets, 4 chunks of 5
    x, y, new_epoch = batches.get(1)
    assert new_epoch is False
    assert x[:, 0].tolist() == [5, 30, 55, 80]
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert batches.get(4)[2] is True and torch.equal(batches.get(4)[0], batches.get(0)[0])


def test_training_lowers_the_loss_and_writes_everything(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any
) -> None:
    summary = train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=60))
    out = outputs(tmp_path)
    curve = np.genfromtxt(out.train_curve, delimiter=",", names=True)
    assert curve["train_loss_nats"][-10:].mean() < curve["train_loss_nats"][:5].mean() - 0.5
    assert summary.best_train_val_loss_nats < math.log(len(tiny_data.vocab))  # beats a uniform guess
    assert summary.steps == 60 and summary.train_chars == 60 * 8 * 32
    assert TrainSummary.read(out.metrics) == summary
    loaded = load_model_dir(out.model_dir, vocab=tiny_data.vocab)
    assert loaded.info.name == "lstm" and loaded.info.mlflow_run_id is not None
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("lstm", "FINISHED")]
    params, tags = runs[0].data.params, runs[0].data.tags
    assert (params["train.seed"], params["arch.hidden_size"], params["train.max_steps"]) == (
        "1337",
        "32",
        "60",
    )
    assert tags["t"] == "1" and tags["charlm.vocab_sha256"] == tiny_data.vocab.sha256
    history = mlflow_client.get_metric_history(runs[0].info.run_id, "train_val_bpc")
    assert [m.step for m in history] == [10, 20, 30, 40, 50, 60]
    # What a reviewer reads on the run: its description, its datasets, the machine of its figures.
    assert tags["mlflow.note.content"].startswith("**lstm**: LSTM, 2 x 32 hidden")
    assert "a generated play" in tags["mlflow.note.content"]
    inputs = {(i.dataset.name, i.dataset.digest, i.tags[0].value) for i in runs[0].inputs.dataset_inputs}
    assert inputs == {("train", "0" * 36, "training"), ("val", "1" * 36, "validation")}
    assert (summary.device, summary.precision, tags["charlm.precision"]) == ("cpu", "fp32", "fp32")
    assert tags["charlm.processor"] == summary.processor and summary.torch_version == torch.__version__


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_weight_averaging_validates_and_exports_the_mean_of_the_last_steps_weights(
    tmp_path: Path, tiny_data: TrainData
) -> None:
    run = tiny_run(average_last=0.25, eval_interval=40)  # one validation, after the last step
    trainer = Trainer(run, tiny_data, tmp_path / "checkpoints")
    after: list[list[torch.Tensor]] = []  # each step's weights
    step = trainer.train_step

    def recorded(at: int) -> float:
        loss = step(at)
        after.append([p.detach().clone() for p in trainer.net.parameters()])
        return loss

    trainer.train_step = recorded  # type: ignore[method-assign]
    trainer.fit(None, tmp_path / "best", [], lambda *_: None)
    # 35 steps of schedule after 5 of warmup: the last quarter is steps 32..39.
    assert trainer.loop.averaged_steps == 8
    mean = [torch.stack(ws).mean(0) for ws in zip(*after[32:], strict=True)]
    exported = load_model_dir(tmp_path / "best").net
    assert all(torch.allclose(p, m, atol=1e-6) for p, m in zip(exported.parameters(), mean, strict=True))
    assert not torch.allclose(next(exported.parameters()), after[-1][0])
    # The trainer goes on from its own weights, the last step's.
    assert all(torch.equal(p, w) for p, w in zip(trainer.net.parameters(), after[-1], strict=True))


@pytest.mark.parametrize("feedforward", [0, 2])
def test_interrupted_run_resumes_bit_exactly(
    tmp_path: Path,
    tiny_data: TrainData,
    mlflow_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    feedforward: int,
) -> None:
    run = tiny_run(average_last=0.5, feedforward=feedforward)  # the average spans the interruption too
    reference = train(tmp_path / "a", tiny_data, mlflow_client, run)

    interrupt_at(monkeypatch, 24)  # the loop checkpoints at 25 and stops
    with pytest.raises(TrainingInterrupted) as info:
        train(tmp_path / "b", tiny_data, mlflow_client, run)
    assert info.value.exit_code == 128 + signal.SIGTERM
    state = read_state(outputs(tmp_path / "b").checkpoint_dir / STATE_FILE)
    assert state is not None and state.loop.steps == 25
    monkeypatch.undo()

    resumed = train(tmp_path / "b", tiny_data, mlflow_client, run)
    assert resumed.best_train_val_loss_nats == reference.best_train_val_loss_nats
    a, b = _weights(outputs(tmp_path / "a").model_dir), _weights(outputs(tmp_path / "b").model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a/plots/val/lstm.csv").read_text() == (tmp_path / "b/plots/val/lstm.csv").read_text()
    statuses = sorted(
        r.info.status
        for r in mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])
    )
    assert statuses == ["FINISHED", "FINISHED"]  # the interrupted run was resumed, not duplicated


def test_same_seed_same_metrics_weights_and_samples(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any
) -> None:
    first = train(tmp_path / "a", tiny_data, mlflow_client, tiny_run(max_steps=20))
    second = train(tmp_path / "b", tiny_data, mlflow_client, tiny_run(max_steps=20))
    assert first.best_train_val_loss_nats == second.best_train_val_loss_nats
    assert (tmp_path / "a/plots/train/lstm.csv").read_text() == (
        tmp_path / "b/plots/train/lstm.csv"
    ).read_text()
    models = [load_model_dir(outputs(tmp_path / run).model_dir) for run in ("a", "b")]
    weights = [_weights(outputs(tmp_path / run).model_dir) for run in ("a", "b")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    options = config(SamplingOptions, length=60, temperature=0.8, top_p=0.95, seed=7)
    a, b = ("".join(generate(m.net, m.vocab, "ROMEO:", options)) for m in models)
    assert a == b and len(a) == 60


def test_non_finite_loss_stops_and_keeps_last_checkpoint(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any
) -> None:
    run = tiny_run(learning_rate=1e6, grad_clip=1e6, warmup_steps=0, checkpoint_interval=1, eval_interval=1)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at step \d+"):
        train(tmp_path, tiny_data, mlflow_client, run)
    out = outputs(tmp_path)
    state = read_state(out.checkpoint_dir / STATE_FILE)
    assert state is not None and not state.loop.finished
    assert not out.model_dir.exists()
    (status,) = [
        r.info.status
        for r in mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])
    ]
    assert status == "FAILED"


def test_changed_params_start_afresh(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = train(tmp_path / "a", tiny_data, mlflow_client, tiny_run(max_steps=20))
    interrupt_at(monkeypatch, 7)  # a checkpoint at step 8 that would resume: the run did not finish
    with pytest.raises(TrainingInterrupted):
        train(tmp_path / "b", tiny_data, mlflow_client, tiny_run(max_steps=10))
    monkeypatch.undo()
    summary = train(tmp_path / "b", tiny_data, mlflow_client, tiny_run(max_steps=20))
    # Steps 6-8 of the other run followed its own cosine schedule: resuming them would change the weights.
    assert summary.best_train_val_loss_nats == reference.best_train_val_loss_nats
    a, b = _weights(outputs(tmp_path / "a").model_dir), _weights(outputs(tmp_path / "b").model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_after_patience_evaluations(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses = iter([3.0, 2.0, 2.5, 2.4, 1.0])  # improves, improves, then two evaluations without
    monkeypatch.setattr(Trainer, "validate", lambda self: (next(losses), 0.0))
    summary = train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=50, patience=2))
    assert summary.stopped_early and summary.steps == 40
    assert summary.best_train_val_loss_nats == 2.0 and summary.best_step == 20


def test_a_second_trainer_on_the_same_checkpoints_refuses(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any
) -> None:
    from charlm.errors import CharlmError
    from charlm.files import file_lock

    with file_lock(tmp_path / "checkpoints" / ".lstm.lock"), pytest.raises(CharlmError) as info:
        train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=5))
    assert f"checkpoints/lstm is in use by training process {os.getpid()}" in str(info.value)
    assert mlflow_client.search_experiments(filter_string="name = 'test'") == []  # refused before any run
    assert train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=5)).steps == 5  # free again


def test_a_state_from_another_version_is_not_resumed_and_a_foreign_file_is_refused(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any
) -> None:
    from safetensors.torch import save_file

    from charlm.errors import DataError

    state = outputs(tmp_path).checkpoint_dir / STATE_FILE
    state.parent.mkdir(parents=True)
    old = {"format": "charlm-train-state/2", "fingerprint": "old", "trainer": {"step": 5, "finished": False}}
    save_file({"w": torch.zeros(1)}, state, metadata={"meta": json.dumps(old)})
    assert train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=10)).steps == 10  # afresh
    save_file({"w": torch.zeros(1)}, state, metadata={"meta": json.dumps({"format": "something else"})})
    with pytest.raises(DataError, match="not a charlm training state"):
        train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=10))


def test_a_checkpoint_that_cannot_be_restored_fails_its_resumed_run(
    tmp_path: Path, tiny_data: TrainData, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from charlm.errors import DataError

    interrupt_at(monkeypatch, 7)
    with pytest.raises(TrainingInterrupted):
        train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=20))
    monkeypatch.undo()
    path = outputs(tmp_path).checkpoint_dir / STATE_FILE
    with safe_open(str(path), framework="pt") as f:
        header, tensors = f.metadata(), {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    assert tensors["model.head.bias"].shape != (3,)
    tensors["model.head.bias"] = torch.zeros(3)  # the same run and fingerprint, a damaged tensor
    save_file(tensors, path, metadata=header)
    with pytest.raises(DataError, match="weights do not fit the model"):
        train(tmp_path, tiny_data, mlflow_client, tiny_run(max_steps=20))
    (run,) = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FAILED"  # resumed, then ended: not left RUNNING
