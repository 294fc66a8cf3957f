"""Validated records (`Record`: frozen pydantic models that refuse unknown keys and wrong types), and
the one formatter (`invalid`) that words their errors as a line naming the bad key."""

import difflib
import json
from pathlib import Path
from typing import Any, Literal, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from charlm.errors import DataError, ParamsError
from charlm.files import write_json

KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "too_short": "non-empty",
    "string_too_short": "non-empty",
    "string_pattern_mismatch": "a name",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}
BOUNDS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}
SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class Invalid(ParamsError, ValueError):
    """A bad value named by its key: raised by a record's own rules (a ValueError, which pydantic
    wraps) and returned by `invalid` for whatever pydantic refuses, the key then dotted in full."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def unknown_key(key: str, allowed: list[str]) -> Invalid:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Invalid(key, f"unknown key{hint}; allowed: {', '.join(allowed)}")


class Record(BaseModel):
    """A frozen, strictly typed set of named values that refuses keys it does not declare."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        # Checked before the fields, so a misspelt key is reported as such, with the nearest one.
        # A computed field is written for people to read, and computed again on reading.
        if isinstance(raw, dict):
            for key in raw:
                if key not in cls.model_fields and key not in cls.model_computed_fields:
                    raise unknown_key(str(key), list(cls.model_fields))
            return {k: v for k, v in raw.items() if k not in cls.model_computed_fields}
        return raw

    @classmethod
    def parse(cls, raw: Any) -> Self:
        """Validate `raw` (a mapping); errors are `Invalid`, naming the dotted key."""
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise invalid(err) from None

    @classmethod
    def check(cls, values: dict[str, Any]) -> None:
        """Validate some of the record's fields, each by its own type and bounds (rules across
        fields wait for the whole record); errors as `parse` words them."""
        if unknown := [name for name in values if name not in cls.model_fields]:
            raise unknown_key(unknown[0], list(cls.model_fields))
        fields = {name: (cls.model_fields[name].annotation, cls.model_fields[name]) for name in values}
        create_model(cls.__name__, __base__=Record, **fields).parse(values)  # type: ignore[call-overload]

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read a record written by `write`; errors name the file and the bad key."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read {cls.__name__} ({err})") from None
        try:
            return cls.parse(raw)
        except Invalid as err:
            raise DataError(f"{path}: not a valid {cls.__name__}: {err}") from None

    @classmethod
    def read_all(cls, directory: Path) -> list[Self]:
        """The record in each file of `directory`, in name order."""
        if not directory.is_dir():
            raise DataError(f"{directory}: no such directory")
        return [cls.read(path) for path in sorted(directory.iterdir()) if path.is_file()]

    def write(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


def invalid(err: ValidationError) -> Invalid:
    """pydantic's first error as one line naming the dotted key, what is allowed and what was found."""
    error = err.errors(include_url=False)[0]
    key = ".".join(map(str, error["loc"]))
    kind, value = error["type"], error.get("input")
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, Invalid):  # a record's own rule, naming a field of the record at `key`
        return Invalid(f"{key}.{cause.key}" if key else cause.key, cause.message)
    if kind == "value_error":
        return Invalid(key, f"{cause}, got {value!r}")
    if kind == "missing":
        return Invalid(key, "missing (required)")
    if kind == "extra_forbidden":
        return Invalid(key, "unknown key")
    if kind == "literal_error":
        allowed = "one of " + error["ctx"]["expected"].replace(" or ", ", ")
    elif kind in BOUNDS:
        bound = BOUNDS[kind]
        limit = error["ctx"][bound]
        allowed = f"{SYMBOLS[bound]} {int(limit) if float(limit).is_integer() else limit}"
    else:
        allowed = KINDS.get(kind, error["msg"].removeprefix("Input should be ").lower())
    return Invalid(key, f"must be {allowed}, got {value!r}")


def base_type(annotation: Any) -> type:
    """The plain type under Optional[...] and Annotated[...] (for a Literal, its values' type)."""
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0])
    args = [a for a in get_args(annotation) if a is not type(None) and not isinstance(a, FieldInfo)]
    return base_type(args[0]) if args else annotation
