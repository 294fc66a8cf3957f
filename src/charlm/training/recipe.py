"""The optimisation recipe: AdamW with weight decay on matrices only, linear warmup, cosine decay
(the output layer starts at the unigram distribution: `charlm.model.heads`)."""

import math

import torch

from charlm.model.network import CharLM
from charlm.params.training import TrainConfig


def progress(step: int, cfg: TrainConfig, time_spent: float) -> float:
    """How much of the schedule after warmup is spent at `step`, 0 to 1: of the steps to max_steps,
    or of the time budget (`time_spent`, the trainer's share of it), whichever runs out first."""
    spent = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
    return min(max(spent, time_spent, 0.0), 1.0)


def lr_at(step: int, cfg: TrainConfig, time_spent: float) -> float:
    """Linear warmup to learning_rate, then cosine decay to learning_rate * min_lr_ratio over the
    rest of the schedule."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (
        1 + math.cos(math.pi * progress(step, cfg, time_spent))
    )


def in_average(step: int, cfg: TrainConfig, time_spent: float) -> bool:
    """Whether the weights after `step` join the average: in the last `average_last` of the schedule."""
    return (
        cfg.average_last > 0
        and step >= cfg.warmup_steps
        and progress(step, cfg, time_spent) >= 1 - cfg.average_last
    )


def make_optimizer(net: CharLM, cfg: TrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; biases do not benefit from weight decay.
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
