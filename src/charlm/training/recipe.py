"""The optimisation recipe: AdamW with weight decay on matrices only, linear warmup, cosine decay."""

import math

import torch

from charlm.model.network import CharLM
from charlm.params.train import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to learning_rate * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: CharLM, cfg: TrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; biases do not benefit from weight decay.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
