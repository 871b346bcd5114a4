"""A few seeded optimizer steps on a model of 4 inputs, so that an optimizer has state to save
(shared by the nested-state and training-metadata tests). Importable by name from every test
folder, like ``json_values``."""

from __future__ import annotations

import torch


def train_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    """``steps`` optimizer steps on the squared output of seeded ``[8, 4]`` batches."""
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
