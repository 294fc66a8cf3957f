"""interface: a served request is as strict as params: unknown and retired fields are refused by
name, the prompt is required, and options are checked against their bounds and the limits."""

import pytest
from pydantic import ValidationError

from charlm.errors import CharlmError, ParamsError
from charlm.params.generate import SamplingOptions
from charlm.params.serve import ServeConfig
from charlm.serving.interface import GenerationRequest, ServedSettings
from tests.helpers import config

LIMITS = config(ServeConfig, max_request_rows=3, max_request_chars=100)
SETTINGS = ServedSettings(sampling=config(SamplingOptions, length=20, top_k=4), limits=LIMITS)


def rows(*fields: dict) -> list:
    return [GenerationRequest.model_validate({"prompt": "a"} | f) for f in fields]


def test_request_fields_are_the_prompt_and_the_sampling_options() -> None:
    assert list(GenerationRequest.model_fields) == ["prompt", *SamplingOptions.model_fields]
    assert GenerationRequest.model_fields["prompt"].is_required()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "a", "lenght": 5}, r"lenght: unknown key \(did you mean 'length'\?\)"),
        ({"prompt": "a", "max_new_chars": 5}, r"max_new_chars: unknown key; allowed: prompt, length"),
        ({"prompt": None}, r"prompt\n  Input should be a valid string"),
        ({"length": 5}, r"prompt\n  Field required"),
    ],
)
def test_bad_requests_are_refused_by_name(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GenerationRequest.model_validate(fields)


def test_options_take_the_logged_defaults_and_keep_to_the_limits() -> None:
    (options,) = SETTINGS.options(rows({"seed": 3}))
    assert (options.length, options.top_k, options.seed) == (20, 4, 3)
    with pytest.raises(ParamsError, match="temperature: must be > 0, got 0"):
        SETTINGS.options(rows({"temperature": 0}))
    with pytest.raises(ParamsError, match="unknown: must be one of 'error', 'unk', got 'x'"):
        SETTINGS.options(rows({"unknown": "x"}))
    assert len(SETTINGS.options(rows({"length": 50}, {"length": 50}))) == 2  # 100 characters in all
    with pytest.raises(CharlmError, match=r"^max_request_chars: .* at most 100 characters in all, got 101$"):
        SETTINGS.options(rows({"length": 50}, {"length": 51}))
    with pytest.raises(CharlmError, match=r"^max_request_rows: .* at most 3 texts, got 4$"):
        SETTINGS.options(rows({}, {}, {}, {}))


def test_a_request_share_larger_than_the_batch_is_refused() -> None:
    with pytest.raises(ParamsError, match="max_request_batch_rows: must be at most max_batch_rows"):
        config(ServeConfig, max_batch_rows=4, max_request_batch_rows=8)
