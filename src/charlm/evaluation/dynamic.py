"""Dynamic evaluation (Krause et al., 2018): a model that keeps learning as it reads the held-out
text, scored beside the same characters read by the model as trained."""

import numpy as np
import torch

from charlm.data.streams import Streams
from charlm.errors import CharlmError
from charlm.evaluation.metrics import EvalResult
from charlm.model.device import autocast
from charlm.model.network import CharLM, detach_hidden
from charlm.params.generation import DynamicConfig
from charlm.progress import OnProgress, quiet


def dynamic(
    net: CharLM,
    ids: np.ndarray,
    cfg: DynamicConfig,
    device: torch.device,
    dtype: torch.dtype | None = None,
    on_progress: OnProgress = quiet,
) -> tuple[EvalResult, EvalResult]:
    """The static and the dynamic figures of the first `cfg.chars` of `ids`, read in order as one
    stream, `cfg.seq_len` at a time, the hidden state carried. Dynamically, each segment is scored
    first, then the model takes an SGD step on it and is pulled back toward its trained weights by
    `cfg.decay`: no character is scored by weights that have seen it. The weights are restored.
    Progress in characters, of both readings."""
    stream = Streams(ids[: cfg.chars + 1], 1)  # (1, L)
    chars = stream.length - 1
    trained = [p.detach().clone() for p in net.parameters()]
    weights = list(net.parameters())
    was_training = net.training
    net.eval()  # no dropout; cuDNN's RNN backward needs training mode, so cuDNN sits out below
    figures = []
    try:
        with torch.backends.cudnn.flags(enabled=False):
            for reading, learning_rate in enumerate((0.0, cfg.learning_rate)):
                nats, correct, hidden = 0.0, 0, None
                for start in range(0, stream.length - 1, cfg.seq_len):
                    window = stream.chunk(start, min(start + cfg.seq_len, stream.length - 1) + 1, device)
                    x, y = window[:, :-1], window[:, 1:]  # (1, T)
                    with torch.set_grad_enabled(learning_rate > 0), autocast(device, dtype):
                        features, hidden = net.features(x, hidden)  # (1, T, H)
                        loss, hits = net.head.graded(features, y)  # summed nats
                    if not torch.isfinite(loss):
                        raise CharlmError(
                            f"dynamic evaluation diverged at character {start:,} of the test split:"
                            f" try a lower evaluate.dynamic.learning_rate than {learning_rate:g}"
                        )
                    nats += loss.item()
                    correct += int(hits)
                    hidden = detach_hidden(hidden)
                    if learning_rate:
                        net.zero_grad(set_to_none=True)
                        (loss / y.numel()).backward()
                        with torch.no_grad():
                            torch._foreach_add_(weights, [w.grad for w in weights], alpha=-learning_rate)
                            torch._foreach_lerp_(weights, trained, cfg.decay)
                    on_progress(reading * chars + start + y.size(1), 2 * chars)
                figures.append(EvalResult(loss_nats=nats / chars, accuracy=correct / chars, chars=chars))
    finally:
        with torch.no_grad():
            torch._foreach_copy_(weights, trained)
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    return figures[0], figures[1]
