"""Deterministic training of the MLPs: same seed, same weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from axon.offline.data import Scaler, Splits
from axon.offline.model import MLP, ServedModel, parameter_count
from axon.offline.quality import accuracy, roc_auc


@dataclass(frozen=True)
class TrainConfig:
    hidden: Sequence[int]
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    dropout: float = 0.0
    seed: int = 0


@dataclass
class TrainedModel:
    served: ServedModel
    parameters: int
    metrics: dict = field(default_factory=dict)  # val/test AUC and accuracy, loss history


def _evaluate(model: ServedModel, features: np.ndarray, labels: np.ndarray) -> dict:
    with torch.no_grad():
        prob = model(torch.from_numpy(features)).numpy().ravel()
    return {"auc": roc_auc(labels, prob), "accuracy": accuracy(labels, prob)}


def train(
    splits: Splits,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train one MLP with BCE-with-logits and Adam; return the self-contained served model.

    Determinism: the seed fixes initial weights and the shuffling order, torch runs with
    deterministic algorithms and one thread, so the same seed gives bit-identical weights.
    """
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scaler = Scaler.fit(splits.train.features)
        x = torch.from_numpy(scaler.transform(splits.train.features))
        y = torch.from_numpy(splits.train.labels.astype(np.float32)).unsqueeze(1)
        mlp = MLP(config.hidden, dropout=config.dropout)
        optimiser = torch.optim.Adam(mlp.parameters(), lr=config.learning_rate)
        loss_fn = nn.BCEWithLogitsLoss()
        generator = torch.Generator().manual_seed(config.seed)
        history = []
        for epoch in range(config.epochs):
            mlp.train()
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for start in range(0, len(x), config.batch_size):
                idx = order[start : start + config.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(mlp(x[idx]), y[idx])
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(x))
            if on_epoch is not None:
                on_epoch(epoch, history[-1])
        mlp.eval()
        served = ServedModel(mlp, scaler).eval()
        metrics = {
            "val": _evaluate(served, splits.val.features, splits.val.labels),
            "test": _evaluate(served, splits.test.features, splits.test.labels),
            "train_loss": history,
            "config": {
                "hidden": list(config.hidden),
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "learning_rate": config.learning_rate,
                "dropout": config.dropout,
                "seed": config.seed,
            },
        }
        return TrainedModel(served, parameter_count(mlp), metrics)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
