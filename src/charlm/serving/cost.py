"""What a submission costs the batch, for admission: the characters it puts through, how long its
caller waits (`deadline_s`), and what a model step costs by its rows (`StepCost`)."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from charlm.generation.decoder import PROMPT_SLICE, Decoder, Task
from charlm.params.serving import LimitsConfig

DEADLINE_GRACE_S = 5.0  # added to a submission's own generation time, for waiting and HTTP


def deadline_s(tasks: list[Task], limits: LimitsConfig, timeout_s: float) -> float:
    """How long a caller waits: its rows' prompts and generation in waves of its batch share, at the
    floor speed per row, plus a grace; never more than the server's timeout."""
    waves = math.ceil(len(tasks) / limits.max_request_batch_rows)
    longest = max(r.options.length + r.prompt.size(1) for r in tasks)
    return min(timeout_s, DEADLINE_GRACE_S + waves * longest / limits.min_row_chars_per_sec)


def work(tasks: list[Task]) -> tuple[int, int]:
    """The tasks' characters through the batch (generated, and the prompts' ends that ride
    along) and the prompt characters fed in slices."""
    sliced = [max(r.prompt.size(1) - PROMPT_SLICE, 0) for r in tasks]
    return sum(r.options.length + r.prompt.size(1) for r in tasks) - sum(sliced), sum(sliced)


@dataclass
class StepCost:
    """Seconds a model step takes: `fixed` + `per_row` for each row, + `per_char` for each prompt
    character fed in a slice. Measured when the batcher starts; `scale` follows the machine's speed
    as steps run (other load, frequency), so the shape holds whatever rows the traffic brought."""

    fixed: float
    per_row: float
    per_char: float
    scale: float = 1.0

    @classmethod
    def measure(cls, decoder: Decoder, rows: int) -> "StepCost":
        """Time the decoder's steps of 1 and of `rows` rows, and a slice, each the fastest of four after a warm-up."""
        net, step = decoder.net, decoder.net_step
        ids = torch.ones(max(rows, PROMPT_SLICE), dtype=torch.long, device=next(net.parameters()).device)

        def fastest(call: Callable[[], object]) -> float:
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - started)
            return min(seconds[1:])  # the first warms up

        with torch.inference_mode():
            one, full = (fastest(lambda b=b: step(ids[:b], net.initial_hidden(b))) for b in (1, max(rows, 2)))
            piece = fastest(lambda: net.recurrence(ids[:PROMPT_SLICE].view(1, -1)))
        per_row = max(full - one, 0.0) / (max(rows, 2) - 1)
        return cls(fixed=max(one - per_row, 1e-6), per_row=per_row, per_char=piece / PROMPT_SLICE)

    def measured_s(self, rows: int, sliced: int = 0) -> float:
        return self.fixed + self.per_row * rows + self.per_char * sliced

    def observe(self, rows: int, sliced: int, seconds: float) -> None:
        if rows:  # a moving average of how much faster or slower steps run than measured
            self.scale = 0.9 * self.scale + 0.1 * seconds / self.measured_s(rows, sliced)

    def work_s(self, chars: int, sliced: int, rows: int) -> float:
        """Seconds a full batch of `rows` takes for `chars` characters and `sliced` prompt characters."""
        return self.scale * (chars / rows * self.measured_s(rows) + sliced * self.per_char)
