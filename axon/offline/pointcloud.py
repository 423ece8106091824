"""The compute-bound model: a point-cloud jet tagger of the ParticleNet family, with its synthetic jets.

SONIC's production models are not I/O-bound MLPs but several-input graph networks of about
half a million parameters. ``pn`` is one: three EdgeConv blocks (k nearest neighbours in
(eta, phi), an edge MLP over [x_i, x_j - x_i], mean over neighbours, a shortcut), a masked
global average and a small head, as in ParticleNet (Qu & Gouskos 2020), here with plain
Linear layers (no BatchNorm: a frozen graph without it is what onnxruntime and Triton run).

Inputs, batch axis first: ``points`` FP32 [P, 2], ``features`` FP32 [P, 4], ``mask`` FP32
[P, 1] with P = 16 particles per jet (padded, the mask marks real ones); output ``output``
FP32 [1], the signal probability. Trained on synthetic jets (:func:`synthetic_jets`): two-prong
signal against one-prong background, so the network has something real to learn.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

PARTICLES = 16
NEIGHBOURS = 8
BLOCKS = ((64, 64, 64), (128, 128, 128), (256, 256, 256))
INPUTS = ("points", "features", "mask")
OUTPUT = "output"
MASKED_DISTANCE = 1e9  # padded particles are never anyone's neighbour


@dataclass(frozen=True)
class Jets:
    points: np.ndarray  # [n, P, 2]  (d_eta, d_phi) from the jet axis
    features: np.ndarray  # [n, P, 4]  log pT, log E, relative pT, distance to the axis
    mask: np.ndarray  # [n, P, 1]  1 for a real particle
    labels: np.ndarray  # [n]  1 = two-prong signal

    def inputs(self) -> dict[str, np.ndarray]:
        return {"points": self.points, "features": self.features, "mask": self.mask}

    def take(self, index) -> Jets:
        return Jets(self.points[index], self.features[index], self.mask[index], self.labels[index])


def synthetic_jets(n: int, seed: int = 0) -> Jets:
    """Seeded jets: signal has two prongs 0.2-0.4 apart sharing the pT; background one wider prong."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    count = rng.integers(NEIGHBOURS + 1, PARTICLES + 1, n)  # every particle has k real neighbours
    points = np.zeros((n, PARTICLES, 2), np.float32)
    features = np.zeros((n, PARTICLES, 4), np.float32)
    mask = np.zeros((n, PARTICLES, 1), np.float32)
    for i in range(n):
        m = count[i]
        if labels[i]:
            axis = rng.normal(size=2)
            axis *= rng.uniform(0.15, 0.3) / np.linalg.norm(axis)
            prong = rng.integers(0, 2, m)
            centre = np.where(prong[:, None] == 1, axis, -axis)
            spread = 0.03
        else:
            centre, spread = np.zeros((m, 2)), 0.08
        pts = centre + rng.normal(scale=spread, size=(m, 2))
        pt = rng.exponential(1.0, m) + 0.1
        pt /= pt.sum()
        points[i, :m] = pts * 10  # in units of 0.1 in (eta, phi): order one for the network
        features[i, :m] = np.stack(
            [np.log(pt * 500) - 3.5, np.log(pt * 500 * np.cosh(pts[:, 0])) - 3.5, pt * 10, np.hypot(pts[:, 0], pts[:, 1]) * 10],
            axis=1,
        )
        mask[i, :m] = 1.0
    return Jets(points, features, mask, labels)


class EdgeConv(nn.Module):
    def __init__(self, width_in: int, widths: tuple[int, ...], k: int = NEIGHBOURS):
        super().__init__()
        layers: list[nn.Module] = []
        width = 2 * width_in
        for size in widths:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.edge = nn.Sequential(*layers)
        self.shortcut = nn.Linear(width_in, widths[-1])
        self.k = k

    def forward(self, coords: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # k nearest neighbours by squared distance, self excluded, padding pushed away.
        square = (coords * coords).sum(-1, keepdim=True)
        distance = square - 2 * coords @ coords.transpose(1, 2) + square.transpose(1, 2)
        distance = distance + (1.0 - mask.transpose(1, 2)) * MASKED_DISTANCE
        index = distance.topk(self.k + 1, dim=-1, largest=False).indices[:, :, 1:]  # [B, P, k]
        batch, points, width = x.shape
        flat = index.reshape(batch, points * self.k, 1).expand(-1, -1, width)
        neighbours = torch.gather(x, 1, flat).reshape(batch, points, self.k, width)
        centre = x.unsqueeze(2).expand(-1, -1, self.k, -1)
        edges = self.edge(torch.cat([centre, neighbours - centre], dim=-1)).mean(dim=2)
        return torch.relu(edges + self.shortcut(x)) * mask


class ParticleNetLite(nn.Module):
    """points, features, mask -> signal probability [B, 1]."""

    def __init__(self, n_features: int = 4):
        super().__init__()
        blocks, width = [], n_features
        for widths in BLOCKS:
            blocks.append(EdgeConv(width, widths))
            width = widths[-1]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Linear(width, 256), nn.ReLU(), nn.Linear(256, 1))

    def forward(self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, coords = features, points
        for i, block in enumerate(self.blocks):
            x = block(coords, x, mask)
            coords = x if i == 0 else coords  # later blocks find neighbours in the learned space (dynamic graph)
        pooled = (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.sigmoid(self.head(pooled))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(jets: Jets, epochs: int, seed: int = 0, batch_size: int = 64, on_epoch=None) -> tuple[ParticleNetLite, list[float]]:
    """Adam on BCE, seeded; the whole set each epoch in a seeded order."""
    torch.manual_seed(seed)
    model = ParticleNetLite()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCELoss()
    tensors = [torch.from_numpy(a) for a in (jets.points, jets.features, jets.mask)]
    y = torch.from_numpy(jets.labels.astype(np.float32)).unsqueeze(1)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model(*(t[idx] for t in tensors)), y[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(y))
        if on_epoch is not None:
            on_epoch(epoch, history[-1])
    return model.eval(), history


def predict(model: ParticleNetLite, jets: Jets) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in (jets.points, jets.features, jets.mask))).numpy().ravel()


def export_onnx(model: ParticleNetLite, path: Path, opset: int) -> Path:
    """Opset ``opset``, every input and the output with a dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = synthetic_jets(2, seed=1)
    args = tuple(torch.from_numpy(a) for a in (dummy.points, dummy.features, dummy.mask))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            args,
            str(path),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in (*INPUTS, OUTPUT)},
            opset_version=opset,
            dynamo=False,
        )
    return path
