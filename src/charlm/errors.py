"""Errors a user can act on (`CharlmError`: bad params, a corrupt file, an unreachable server), and
how a command-line entry point reports them: their message on one line and a non-zero exit, not a
stack trace, which a bug still shows."""

import signal
import sys
from collections.abc import Callable


class CharlmError(Exception):
    """A failure the user can fix; its message names the bad input and what was expected."""

    exit_code = 2


class ParamsError(CharlmError):
    """params.yaml is malformed, misspelt or out of range."""


class DataError(CharlmError):
    """A corpus, vocabulary or encoded split is missing, empty or unusable."""


class FetchError(CharlmError):
    """The raw corpus could not be obtained or failed its integrity check."""


class LockedError(CharlmError):
    """Another live process holds a lock this one needs."""

    def __init__(self, path: str, pid: str) -> None:
        super().__init__(f"{path} is locked by process {pid}")
        self.path, self.pid = path, pid


class TrainingInterrupted(CharlmError):
    """SIGINT/SIGTERM arrived during training; a checkpoint was written first."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved, rerun to resume")
        self.exit_code = 128 + signum


def run_cli(main: Callable[[], None]) -> None:
    """Run `main`, turning a CharlmError into a one-line message and its exit status (2 by default)."""
    try:
        main()
    except CharlmError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
