"""Validated configuration dataclasses whose errors are one line naming the bad key.

`section` makes a frozen pydantic dataclass with strict types and `extra="forbid"`, and turns
pydantic's errors into `InvalidValue`: `train.seq_len: must be an integer, got 'long'`, with a
did-you-mean hint for a misspelt key. That holds however a config is built: from params.yaml
(`build`, which anchors the key where it was read), by the CLI, or from a served request.
"""

import dataclasses
import difflib
import functools
from typing import Any, Literal, TypeVar, get_args, get_origin

import annotated_types as at
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo

from charlm.errors import ParamsError

T = TypeVar("T")
KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "too_short": "a non-empty list",
    "string_pattern_mismatch": "a name",
}


class InvalidValue(ParamsError):
    """A bad value; `key` is relative to wherever the values were read from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message

    def at(self, where: str) -> "InvalidValue":
        return InvalidValue(f"{where}.{self.key}" if where else self.key, self.message)


def unknown_key(key: str, allowed: list[str]) -> InvalidValue:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return InvalidValue(key, f"unknown key{hint}; allowed: {', '.join(allowed)}")


def settable(cls: type) -> list[str]:
    """The keys a config file may set: every field but those derived from the data."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in getattr(cls, "DERIVED", ())]


def section(cls: type[T]) -> type[T]:
    """A frozen, strictly validated pydantic dataclass whose errors name the bad key in one line."""
    cls = dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))(cls)
    init = cls.__init__

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as err:
            raise _invalid(cls, err.errors(include_url=False)[0]) from None

    cls.__init__ = checked  # type: ignore[method-assign]
    return cls


def _invalid(cls: type, error: dict[str, Any]) -> InvalidValue:
    key, kind, value = ".".join(map(str, error["loc"])), error["type"], error.get("input")
    if kind == "unexpected_keyword_argument":
        return unknown_key(key, settable(cls))
    if kind in ("missing", "missing_argument"):
        return InvalidValue(key, "missing (required)")
    if kind == "value_error":  # a rule of ours: field-level, or across fields naming its key first
        message = str(error["ctx"]["error"])
        return (
            InvalidValue(key, f"{message}, got {value!r}") if key else InvalidValue(*message.split(": ", 1))
        )
    if kind == "literal_error":
        allowed = "one of " + error["ctx"]["expected"].replace(" or ", ", ")
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        allowed = _bounds(cls.__pydantic_fields__[key])
    else:
        allowed = KINDS.get(kind, error["msg"].removeprefix("Input should be ").lower())
    return InvalidValue(key, f"must be {allowed}, got {value!r}")


def _constraints(annotation: Any, metadata: list[Any]) -> list[Any]:
    """The bounds declared on a field, also inside Optional[Annotated[...]]."""
    found = [m for m in metadata if isinstance(m, at.Gt | at.Ge | at.Lt | at.Le)]
    for arg in get_args(annotation):
        found += _constraints(None, arg.metadata) if isinstance(arg, FieldInfo) else _constraints(arg, [])
    return found


def _bounds(field: FieldInfo) -> str:
    """A field's bounds as '> 0' or 'in [0, 1)'."""
    found = _constraints(field.annotation, field.metadata)
    low = next((b for b in found if isinstance(b, at.Gt | at.Ge)), None)
    high = next((b for b in found if isinstance(b, at.Lt | at.Le)), None)
    limits = [next(iter(dataclasses.asdict(b).values())) for b in (low, high) if b is not None]
    text = [str(int(v) if float(v).is_integer() else v) for v in limits]
    if low is not None and high is not None:
        return f"in {'(' if isinstance(low, at.Gt) else '['}{text[0]}, {text[1]}{')' if isinstance(high, at.Lt) else ']'}"
    return {at.Gt: "> ", at.Ge: ">= ", at.Lt: "< ", at.Le: "<= "}[type(low or high)] + text[0]


def base_type(annotation: Any) -> type:
    """The plain type under Optional[...] and Annotated[...] (for a Literal, its values' type)."""
    if get_origin(annotation) is Literal:
        return type(get_args(annotation)[0])
    args = [a for a in get_args(annotation) if a is not type(None) and not isinstance(a, FieldInfo)]
    return base_type(args[0]) if args else annotation


def build(cls: type[T], raw: Any, where: str = "") -> T:
    """Validate the mapping `raw` into `cls`; errors name the key as `where.key`."""
    if not isinstance(raw, dict):
        raise InvalidValue(where or cls.__name__, f"must be a mapping, got {raw!r}")
    for key in raw:
        if key in getattr(cls, "DERIVED", ()) or not isinstance(key, str):
            raise unknown_key(f"{where}.{key}", settable(cls))
    try:
        return cls(**raw)
    except InvalidValue as err:
        raise err.at(where) from None


def check_keys(raw: dict[str, Any], allowed: list[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise unknown_key(f"{where}.{key}", allowed)
