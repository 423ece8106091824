"""The MLPs axon serves, and the wrapper that makes the served graph self-contained."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from axon.names import ARCHITECTURES, MODEL_PREFIX, model_name, served_name  # noqa: F401 (re-exported)
from axon.offline.data import N_FEATURES, Scaler


class MLP(nn.Module):
    """28 -> hidden... -> 1 logit, ReLU between layers, optional dropout."""

    def __init__(self, hidden: Sequence[int], n_in: int = N_FEATURES, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ServedModel(nn.Module):
    """Raw HIGGS features in, signal probability out: scaling and sigmoid folded in.

    A client then needs nothing but the model file, which is what a trigger node would have.
    """

    def __init__(self, mlp: MLP, scaler: Scaler):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("mean", torch.from_numpy(np.asarray(scaler.mean, np.float32)))
        self.register_buffer("inv_std", torch.from_numpy((1.0 / np.asarray(scaler.std, np.float64)).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp((x - self.mean) * self.inv_std))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
