"""What a logged charlm model is to its callers: the rows a request holds (`InputRow`, derived from
`SamplingOptions`), its logged settings (`ServedSettings`) and where its weights sit among its artifacts."""

from typing import Any

from pydantic import Field, create_model, model_validator

from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError
from charlm.generation.decoder import Task, task_for
from charlm.params.generation import SamplingOptions
from charlm.params.serving import LimitsConfig
from charlm.records import Record, base_type

MODEL_DIR_ARTIFACT = "model_dir"  # the charlm model directory, among the logged model's artifacts
DEFAULT_PORT = 5001  # where `charlm serve` listens unless told otherwise

# MLflow reads a row's fields from this record (its signature) and checks each row
# against them strictly; it knows plain types only, so the options' bounds are checked afterwards.
InputRow: type[Record] = create_model(
    "InputRow",
    __base__=Record,
    __doc__="One text to generate: a prompt, and any sampling option to set for it.",
    prompt=(str, Field(description="the text to continue")),
    **{
        name: (base_type(info.annotation) | None, Field(None, description=info.description))  # type: ignore[misc]
        for name, info in SamplingOptions.model_fields.items()
    },
)


class ServedSettings(Record):
    """The model's `model_config`: the options a request does not set, and the limits it is held to."""

    sampling: SamplingOptions
    limits: LimitsConfig

    @model_validator(mode="before")
    @classmethod
    def _logged_before_precision(cls, raw: Any) -> Any:
        # Versions registered before `limits.precision` existed step in fp32, as they always did.
        if isinstance(raw, dict) and isinstance(raw.get("limits"), dict) and "precision" not in raw["limits"]:
            return {**raw, "limits": {**raw["limits"], "precision": "fp32"}}
        return raw

    def tasks(self, rows: list[Any], vocab: Vocabulary) -> list[Task]:
        """Each row as the model will read it: its options over the logged defaults, its prompt in
        the vocabulary's normal form. Bad values and requests over a limit raise, naming the limit;
        the limits count the prompt as normalised (under NFKC one `ﬃ` is three characters)."""
        limits = self.limits
        if not rows:
            raise CharlmError("inputs: a request asks for at least one text, got none")
        if len(rows) > limits.max_request_rows:
            raise CharlmError(
                f"max_request_rows: a request asks for at most {limits.max_request_rows} texts, got {len(rows)}"
            )
        given = [row.model_dump(exclude={"prompt"}, exclude_none=True) for row in rows]
        options = [SamplingOptions.parse(self.sampling.model_dump() | values) for values in given]
        tasks = [task_for(vocab, row.prompt, o) for row, o in zip(rows, options, strict=True)]
        if (longest := max(r.prompt.size(1) for r in tasks)) > limits.max_prompt_chars:
            raise CharlmError(
                f"max_prompt_chars: a prompt has at most {limits.max_prompt_chars} characters, got {longest}"
            )
        if (chars := sum(r.options.length + r.prompt.size(1) for r in tasks)) > limits.max_request_chars:
            raise CharlmError(
                f"max_request_chars: a request asks for at most {limits.max_request_chars} characters"
                f" in all, prompts and generated, got {chars}"
            )
        return tasks
