"""interface: a served request is as strict as params: unknown and retired fields are refused by
name, the prompt is required, and options are checked against their bounds and the limits."""

import pytest
from pydantic import ValidationError

from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError, ParamsError
from charlm.params.generation import SamplingOptions
from charlm.params.serving import LimitsConfig
from charlm.serving.interface import InputRow, ServedSettings
from tests.helpers import config

LIMITS = config(LimitsConfig, max_request_rows=3, max_prompt_chars=50, max_request_chars=110)
SETTINGS = ServedSettings(sampling=config(SamplingOptions, length=20, top_k=4), limits=LIMITS)
VOCAB = Vocabulary.build("abcdef")


def rows(*fields: dict) -> list:
    return [InputRow.model_validate({"prompt": "a"} | f) for f in fields]


def test_request_fields_are_the_prompt_and_the_sampling_options() -> None:
    assert list(InputRow.model_fields) == ["prompt", *SamplingOptions.model_fields]
    assert InputRow.model_fields["prompt"].is_required()


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
        InputRow.model_validate(fields)


def requests(rows: list, vocab: Vocabulary = VOCAB) -> list:
    return SETTINGS.tasks(rows, vocab)


def test_options_take_the_logged_defaults_and_keep_to_the_limits() -> None:
    (req,) = requests(rows({"seed": 3}))
    assert (req.options.length, req.options.top_k, req.options.seed) == (20, 4, 3)
    with pytest.raises(ParamsError, match=r"temperature: must be >= 0\.001, got 0"):
        requests(rows({"temperature": 0}))
    with pytest.raises(ParamsError, match="seed: must be < 9223372036854775808"):
        requests(rows({"seed": 2**64}))
    with pytest.raises(ParamsError, match="unknown: must be one of 'error', 'unk', got 'x'"):
        requests(rows({"unknown": "x"}))
    # Prompts count: two one-character prompts and 108 characters are 110 in all.
    assert len(requests(rows({"length": 54}, {"length": 54}))) == 2
    with pytest.raises(
        CharlmError,
        match=r"^max_request_chars: .* at most 110 characters in all, prompts and generated, got 111$",
    ):
        requests(rows({"length": 54}, {"length": 55}))
    with pytest.raises(CharlmError, match=r"^max_request_rows: .* at most 3 texts, got 4$"):
        requests(rows({}, {}, {}, {}))
    long = [InputRow.model_validate({"prompt": "a" * 51, "length": 5})]
    with pytest.raises(CharlmError, match=r"^max_prompt_chars: a prompt has at most 50 characters, got 51$"):
        requests(long)
    with pytest.raises(CharlmError, match=r"^inputs: a request asks for at least one text, got none$"):
        requests([])


def test_the_limits_count_the_prompt_as_the_model_reads_it() -> None:
    """Normalised, a prompt may grow (NFKC: one ligature, three letters) or shrink (NFC: a letter
    and its combining accent, one character); the limits hold what the model reads."""
    nfkc = Vocabulary.build("fi abc", unicode_form="NFKC")
    with pytest.raises(CharlmError, match=r"^max_prompt_chars: a prompt has at most 50 characters, got 51$"):
        requests(rows({"prompt": "\ufb03" * 17, "length": 5}), nfkc)
    (req,) = requests(rows({"prompt": "\ufb03" * 16, "length": 5}), nfkc)
    assert req.prompt.size(1) == 48
    with pytest.raises(CharlmError, match=r"^max_request_chars: .* got 111$"):
        requests(rows({"prompt": "\ufb03" * 2, "length": 105}), nfkc)
    nfc = Vocabulary.build("\u00e9 abc", unicode_form="NFC")
    (req,) = requests(rows({"prompt": "e\u0301" * 50, "length": 5}), nfc)  # 100 as sent, 50 as read
    assert req.prompt.size(1) == 50


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"max_batch_rows": 4, "max_request_batch_rows": 8},
            "max_request_batch_rows: must be at most max_batch_rows (4), got 8",
        ),
        (
            {"max_waiting_rows": 16, "max_request_rows": 32},
            "max_request_rows: must be at most max_waiting_rows (16), got 32",
        ),
        (
            {"max_request_chars": 100, "max_prompt_chars": 200},
            "max_prompt_chars: must be at most max_request_chars (100), got 200",
        ),
    ],
)
def test_limits_that_cannot_hold_together_are_refused(limits: dict[str, int], message: str) -> None:
    # Under each pair, a request within the first limit would be refused forever by the second.
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(LimitsConfig, **limits)


def test_a_version_logged_before_the_precision_setting_steps_in_fp32() -> None:
    logged = SETTINGS.model_dump(mode="json")
    del logged["limits"]["precision"]
    assert ServedSettings.parse(logged).limits.precision == "fp32"
    with pytest.raises(ParamsError, match=r"^limits.precision: must be one of 'fp32', 'int8', got 'fp16'$"):
        ServedSettings.parse(
            SETTINGS.model_dump(mode="json") | {"limits": {**logged["limits"], "precision": "fp16"}}
        )
