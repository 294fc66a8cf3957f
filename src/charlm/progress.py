"""Progress of a long stage on stderr: how much is done, how fast, and how long is left.

In a terminal the bar redraws every second; in a log (DVC, CI) it writes a line every 30 s.
"""

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str, **options: Any) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
        **options,
    )


def bytes_bar(total: int, desc: str) -> tqdm:
    """Counts bytes read, shown in MB and MB/s."""
    return progress_bar(total, desc, "B", unit_scale=True, unit_divisor=1000)
