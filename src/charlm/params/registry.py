"""The registry's sections: `registry` (the registered model, its alias, and when the alias may
move) and `limits` (the served model's limits per request and its admission control per worker,
logged with it; `charlm.serving.batching` says how they work together)."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from charlm.params.base import Positive, PositiveFloat
from charlm.records import Invalid, Record


class RegistryConfig(Record):
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*$")]
    alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    # When the champion was validated on other data the two cannot be compared:
    # keep the champion or promote the new candidate anyway.
    on_new_val_data: Literal["keep", "promote"]
    # A candidate replaces the champion only if its val bpc is lower by more than this: less than
    # the spread between training seeds is no difference.
    min_improvement_bpc: Annotated[float, Field(ge=0, allow_inf_nan=False)]

    @property
    def alias_uri(self) -> str:
        """The model URI that follows the alias, e.g. `models:/charlm@champion`."""
        return f"models:/{self.model_name}@{self.alias}"


class LimitsConfig(Record):
    max_request_rows: Positive  # texts one request may ask for
    max_prompt_chars: Positive  # characters of one prompt
    max_request_chars: Positive  # characters of one request, prompts and generated, over all its texts
    max_batch_rows: Positive  # rows a worker generates at once; the others wait their turn
    max_request_batch_rows: Positive  # a request's share: its rows in the batch at once
    max_waiting_rows: Positive  # rows a worker holds waiting; a request beyond gets 503
    min_row_chars_per_sec: PositiveFloat  # a request's deadline: its size at this speed per row

    @model_validator(mode="after")
    def _limits_hold_together(self) -> "LimitsConfig":
        # Each pair: a request within the first could never be served under the second.
        for small, large in [
            ("max_request_batch_rows", "max_batch_rows"),
            ("max_request_rows", "max_waiting_rows"),
            ("max_prompt_chars", "max_request_chars"),
        ]:
            if getattr(self, small) > getattr(self, large):
                raise Invalid(
                    small, f"must be at most {large} ({getattr(self, large)}), got {getattr(self, small)}"
                )
        return self
