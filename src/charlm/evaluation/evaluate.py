"""Deterministic evaluation: one full pass over a split with the hidden state carried. The split is laid out
as B parallel streams (`charlm.data.streams`, as in training) and read in chunks of T from its memory-mapped
ids; every target position of every stream is scored exactly once, so the result does not depend on random
batches. `windowed` is the other protocol in use (nanoGPT's `estimate_loss`): random windows, each read from a
cold start, here a fixed seeded set so that two models are scored on the same windows."""

import math

import numpy as np
import torch

from charlm.data.streams import Streams
from charlm.evaluation.metrics import EvalResult
from charlm.model.device import autocast
from charlm.model.network import CharLM
from charlm.progress import OnProgress, quiet


@torch.no_grad()
def evaluate(
    net: CharLM,
    ids: np.ndarray,
    batch_size: int,
    seq_len: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    on_progress: OnProgress = quiet,
) -> EvalResult:
    """Every target of `ids` scored once, in B streams read T at a time; progress in characters."""
    was_training = net.training
    net.eval()
    data = Streams(ids, min(batch_size, max(len(ids) // 2, 1)))  # (B, L), read a chunk at a time
    chars = data.ids.shape[0] * (data.length - 1)
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    hidden = None
    for start in range(0, data.length - 1, seq_len):
        window = data.chunk(start, min(start + seq_len, data.length - 1) + 1, device)  # (B, T + 1)
        x, y = window[:, :-1], window[:, 1:]  # (B, T)
        with autocast(device, dtype):
            features, hidden = net.features(x, hidden)  # (B, T, H)
            nats, hits = net.head.graded(features, y)
        total_nats += nats.double()
        correct += hits
        on_progress(y.numel() + start * y.size(0), chars)
    net.train(was_training)
    return EvalResult(loss_nats=total_nats.item() / chars, accuracy=correct.item() / chars, chars=chars)


@torch.no_grad()
def windowed(
    net: CharLM,
    ids: np.ndarray,
    windows: int,
    length: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> EvalResult:
    """The mean loss over `windows` windows of `length` targets at seeded random offsets, each
    scored from a zero hidden state (every target of a window counts, the first ones with little
    context), in batches of 64 windows."""
    if len(ids) <= length:
        raise ValueError(f"windowed: {len(ids)} ids hold no window of {length} targets")
    was_training = net.training
    net.eval()
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, size=windows)
    total_nats, correct = 0.0, 0
    for batch in np.array_split(starts, math.ceil(windows / 64)):
        window = torch.from_numpy(np.stack([ids[s : s + length + 1] for s in batch]).astype(np.int64))
        x, y = window[:, :-1].to(device), window[:, 1:].to(device)  # (B, T)
        with autocast(device, dtype):
            nats, hits = net.head.graded(net.features(x, None)[0], y)
        total_nats += nats.item()
        correct += int(hits.item())
    net.train(was_training)
    chars = windows * length
    return EvalResult(loss_nats=total_nats / chars, accuracy=correct / chars, chars=chars)
