"""Progress of a long stage on stderr: how much is done, how fast, and how long is left; redrawn every second
in a terminal, a line every 30 s in a log (DVC, CI). Work that knows its total reports (done, total), in its
own units, through an `OnProgress` callback as it goes; `work_bar` shows it, `quiet` shows nothing."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a bar is drawn: the served model reads the callbacks alone
    from tqdm import tqdm

OnProgress = Callable[[int, int], object]  # (done, total), in the work's own units


def quiet(done: int, total: int) -> None:
    """Progress that nobody watches (training's validations, tests)."""


def progress_bar(total: int, desc: str, unit: str, **options: Any) -> "tqdm":
    from tqdm import tqdm

    interval = 1.0 if sys.stderr.isatty() else 30.0  # seconds between redraws: a log gets a line now and then
    return tqdm(total=total, desc=desc, unit=unit, mininterval=interval, file=sys.stderr, **options)


def bytes_bar(total: int, desc: str) -> "tqdm":
    """Counts bytes read, shown in MB and MB/s."""
    return progress_bar(total, desc, "B", unit_scale=True, unit_divisor=1000)


@contextmanager
def work_bar(desc: str, unit: str) -> Iterator[OnProgress]:
    """Shows the progress a piece of work reports, (done, total) as it goes; the bar starts with
    the first report, which brings its total."""
    bars: list[tqdm] = []

    def on_progress(done: int, total: int) -> None:
        if not bars:
            bars.append(progress_bar(total, desc, unit, unit_scale=True))
        bars[0].update(done - bars[0].n)

    try:
        yield on_progress
    finally:
        for bar in bars:
            bar.close()


@contextmanager
def step_bar(
    desc: str, total: int, done: int, disable: bool = False
) -> Iterator[Callable[[float, float, float | None], None]]:
    """Counts training steps; each step reports its loss, the characters per second so far and,
    after an evaluation, the validation bpc (shown until the next)."""
    postfix: dict[str, str] = {}
    with progress_bar(total, desc, "step", initial=done, disable=disable) as bar:

        def on_step(loss: float, chars_per_sec: float, train_val_bpc: float | None) -> None:
            postfix.update(loss=f"{loss:.3f}", chars_s=f"{chars_per_sec:,.0f}")
            if train_val_bpc is not None:
                postfix["train_val_bpc"] = f"{train_val_bpc:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)

        yield on_step
