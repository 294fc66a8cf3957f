"""interface: a served request is as strict as params: unknown and retired fields are refused by
name, the prompt is required, and options are checked against their bounds and the limits."""

import pytest
from pydantic import ValidationError

from charlm.errors import CharlmError, ParamsError
from charlm.params import SamplingOptions, ServeConfig
from charlm.serving.interface import GenerationRequest, ServedSettings

SETTINGS = ServedSettings(
    sampling=SamplingOptions(length=20, top_k=4), limits=ServeConfig(max_request_chars=100)
)


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
    options = SETTINGS.options(GenerationRequest.model_validate({"prompt": "a", "seed": 3}))
    assert (options.length, options.top_k, options.seed) == (20, 4, 3)
    with pytest.raises(ParamsError, match="temperature: must be > 0, got 0"):
        SETTINGS.options(GenerationRequest.model_validate({"prompt": "a", "temperature": 0}))
    with pytest.raises(ParamsError, match="unknown: must be one of 'error', 'unk', got 'x'"):
        SETTINGS.options(GenerationRequest.model_validate({"prompt": "a", "unknown": "x"}))
    with pytest.raises(CharlmError, match="length: at most 100 per request, got 101"):
        SETTINGS.options(GenerationRequest.model_validate({"prompt": "a", "length": 101}))
