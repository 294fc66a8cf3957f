"""How a refused request is answered on every route (`predict`, `/invocations`, `/stream`): each
kind of refusal once, as the MLflow error code the scoring server answers with its HTTP status."""

from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED, INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from charlm.errors import CharlmError
from charlm.serving.batching import Overloaded
from charlm_scoring_loop import RETRY_AFTER_KEY

# The error, its code (400, 503, 504) and what the message starts with.
REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (CharlmError, INVALID_PARAMETER_VALUE, "invalid request: "),
    (Overloaded, TEMPORARILY_UNAVAILABLE, ""),
    (TimeoutError, DEADLINE_EXCEEDED, ""),
)


def refusal(err: Exception) -> MlflowException | None:
    """`err` as the MLflow error its request is answered with; None when `err` refuses nothing."""
    for kind, code, prefix in REFUSALS:
        if isinstance(err, kind):
            wait = {RETRY_AFTER_KEY: err.retry_after_s} if isinstance(err, Overloaded) else {}
            return MlflowException(f"{prefix}{err}", error_code=code, **wait)
    return None


@contextmanager
def answered_as_refusals() -> Iterator[None]:
    """Raise each refusal as its MLflow error; any other error as it is."""
    try:
        yield
    except Exception as err:
        if (answer := refusal(err)) is None:
            raise
        raise answer from None
