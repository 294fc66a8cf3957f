"""The `limits` section: the served model's limits per request, its admission control per worker and
the precision of its step, logged with it (`charlm.serving.batching` says how they work together)."""

from typing import Literal

from pydantic import model_validator

from charlm.params.base import Positive, PositiveFloat
from charlm.records import Invalid, Record

Precision = Literal["fp32", "int8"]  # the served step's recurrent matrices (`charlm.model.int8`)


class LimitsConfig(Record):
    max_request_rows: Positive  # texts one request may ask for
    max_prompt_chars: Positive  # characters of one prompt
    max_request_chars: Positive  # characters of one request, prompts and generated, over all its texts
    max_batch_rows: Positive  # rows a worker generates at once; the others wait their turn
    max_request_batch_rows: Positive  # a request's share: its rows in the batch at once
    max_waiting_rows: Positive  # rows a worker holds waiting; a request beyond gets 503
    min_row_chars_per_sec: PositiveFloat  # a request's deadline: its size at this speed per row
    precision: Precision  # of the served step's recurrent matrices: fp32, or int8 (faster, CPU only)

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
