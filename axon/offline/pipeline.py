"""The offline half of axon: data -> train -> export -> validate -> model repositories."""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.names import ARCHITECTURES, POINT_CLOUD_VERSION, VERSIONS, model_name
from axon.offline import data, export, repository
from axon.records.atomic import write_json

VALIDATION_ROWS_FILE = "validation_rows.npz"
# A model with inputs of its own (not HIGGS rows) keeps its validation inputs beside it, one
# array per input name: what the faces send it, as --input-data would.
MODEL_INPUTS_FILE = "inputs.npz"
# The point-cloud tagger trains on its own synthetic jets; seconds per epoch on 2 cores per
# thousand jets, so a small set and few epochs (its metrics.json says how it was trained).
POINT_CLOUD_JETS = 2_000
POINT_CLOUD_VALIDATION_JETS = 512
POINT_CLOUD_MAX_EPOCHS = 2
MANIFEST_FILE = "manifest.json"
# The export check runs batches of up to max(VALIDATION_BATCHES) real rows drawn from the
# training and validation splits; the stratified split may round away one row per class.
MIN_ROWS = math.ceil((max(export.VALIDATION_BATCHES) + 2) / (1 - data.SPLIT_FRACTIONS[2]))


def check_rows(rows: int) -> None:
    """Refuse, before any data is read or model trained, a dataset too small to validate."""
    if rows < MIN_ROWS:
        raise AxonError(
            f"training needs at least {MIN_ROWS} rows, got {rows} "
            f"(the export check runs a batch of {max(export.VALIDATION_BATCHES)} rows from the train and validation splits)"
        )


@dataclass(frozen=True)
class BuiltModel:
    name: str
    parameters: int
    val_auc: float
    val_accuracy: float
    onnx_path: Path
    metrics_path: Path


def ensure_writable(directory: Path) -> None:
    """Fail early, with a clear message, on an output directory that can't be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".axon-probe-"):
            pass
    except OSError as exc:
        raise AxonError(f"output directory {directory} is not writable: {exc.strerror or exc}") from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(
    dataset: data.Dataset,
    out: Path,
    versions: Sequence[str] = ("v1", "v2"),
    epochs: int = 8,
    seed: int = 0,
    gpu_repository: Path | None = None,
    options: repository.ServingOptions | None = None,
    on_epoch: Callable[[str, int, float], None] | None = None,
) -> list[BuiltModel]:
    """Train, export and validate each version, then write every repository.

    Writes under ``out``: ``models/<name>/{model.onnx,metrics.json}``, ``repositories/...``,
    the validation rows (the load generator's payloads) and a manifest naming the dataset.
    """
    # Every check before the first directory is made or torch is imported (seconds).
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        raise AxonError(f"unknown model version(s) {unknown}; known: {list(VERSIONS)}")
    check_rows(len(dataset.labels))
    splits = data.split(dataset, seed=seed)
    ensure_writable(out)
    options = options or repository.ServingOptions()
    # Training needs torch; imported here so that benchmarking (which reads this module's
    # file names) does not.
    from axon.offline.train import TrainConfig, train

    built: list[BuiltModel] = []
    for version in versions:
        name = model_name(version)
        if version == POINT_CLOUD_VERSION:
            built.append(_build_point_cloud(dataset, out / "models" / name, min(epochs, POINT_CLOUD_MAX_EPOCHS), seed, on_epoch))
            continue
        trained = train(
            splits,
            TrainConfig(hidden=ARCHITECTURES[version], epochs=epochs, seed=seed),
            on_epoch=(lambda e, loss, _n=name: on_epoch(_n, e, loss)) if on_epoch else None,
        )
        model_dir = out / "models" / name
        onnx_path = export.export_onnx(trained.served, model_dir / repository.MODEL_FILE)
        # Validation rows first; training rows top them up when a small dataset has < 256.
        check = export.validate(trained.served, onnx_path, np.concatenate([splits.val.features, splits.train.features]))
        metrics = {
            "model": name,
            "architecture": [data.N_FEATURES, *ARCHITECTURES[version], 1],
            "parameters": trained.parameters,
            "dataset": dataset.info.as_dict(),
            "splits": {"train": len(splits.train.labels), "val": len(splits.val.labels), "test": len(splits.test.labels)},
            "val": trained.metrics["val"],
            "test": trained.metrics["test"],
            "train_loss": trained.metrics["train_loss"],
            "training": trained.metrics["config"],
            "export": check,
            "onnx": {"path": str(onnx_path), "sha256": _sha256(onnx_path)},
        }
        metrics_path = model_dir / "metrics.json"
        write_json(metrics_path, metrics)
        built.append(
            BuiltModel(name, trained.parameters, metrics["val"]["auc"], metrics["val"]["accuracy"], onnx_path, metrics_path)
        )

    models = {m.name: m.onnx_path for m in built}
    repos = repository.write_all(out / "repositories", models, options)
    if gpu_repository is not None:
        for batching in repository.BATCHING_MODES:
            repository.write_repository(gpu_repository / repository.batching_dir(batching), "gpu", batching, models, options)
    # Real validation rows travel with the models: the load generator's payloads and the
    # reference for correctness checks over the wire.
    np.savez(out / VALIDATION_ROWS_FILE, features=splits.val.features, labels=splits.val.labels)
    write_json(
        out / MANIFEST_FILE,
        {
            "dataset": dataset.info.as_dict(),
            "models": {m.name: {"onnx": str(m.onnx_path), "metrics": str(m.metrics_path)} for m in built},
            "repositories": {t: {b: str(p) for b, p in modes.items()} for t, modes in repos.items()},
            "validation_rows": str(out / VALIDATION_ROWS_FILE),
        },
    )
    return built


def _build_point_cloud(dataset: data.Dataset, model_dir: Path, epochs: int, seed: int, on_epoch) -> BuiltModel:
    """Train, export and check the point-cloud tagger on synthetic jets; keep its validation inputs."""
    from axon.offline import pointcloud
    from axon.offline.quality import accuracy, roc_auc

    name = model_dir.name
    jets = pointcloud.synthetic_jets(POINT_CLOUD_JETS + POINT_CLOUD_VALIDATION_JETS, seed)
    train_jets, val_jets = jets.take(slice(0, POINT_CLOUD_JETS)), jets.take(slice(POINT_CLOUD_JETS, None))
    model, history = pointcloud.train(
        train_jets, epochs, seed, on_epoch=(lambda e, loss: on_epoch(name, e, loss)) if on_epoch else None
    )
    onnx_path = pointcloud.export_onnx(model, model_dir / repository.MODEL_FILE, export.OPSET)
    prob = pointcloud.predict(model, val_jets)
    # The exported graph against torch on the validation jets, as the MLPs are checked.
    got = export.session(onnx_path).run(None, val_jets.inputs())[0].ravel()
    diff = float(np.max(np.abs(got - prob)))
    if diff > export.ATOL * 10:
        raise export.ExportError(f"{onnx_path}: onnxruntime differs from torch by {diff:.3g} on the validation jets")
    np.savez(model_dir / MODEL_INPUTS_FILE, **val_jets.inputs())
    val = {"auc": roc_auc(val_jets.labels, prob), "accuracy": accuracy(val_jets.labels, prob)}
    parameters = pointcloud.parameter_count(model)
    metrics = {
        "model": name,
        "architecture": {
            "kind": "EdgeConv point cloud",
            "particles": pointcloud.PARTICLES,
            "neighbours": pointcloud.NEIGHBOURS,
            "blocks": [list(b) for b in pointcloud.BLOCKS],
        },
        "parameters": parameters,
        "dataset": {
            "name": "synthetic jets",
            "jets": POINT_CLOUD_JETS,
            "validation_jets": POINT_CLOUD_VALIDATION_JETS,
            "seed": seed,
            "higgs_rows_unused": dataset.info.rows,
        },
        "val": val,
        "train_loss": history,
        "training": {"epochs": epochs, "batch_size": 64, "learning_rate": 1e-3, "seed": seed},
        "export": {"opset": export.OPSET, "max_abs_diff": diff, "inputs": list(pointcloud.INPUTS)},
        "onnx": {"path": str(onnx_path), "sha256": _sha256(onnx_path)},
    }
    metrics_path = model_dir / "metrics.json"
    write_json(metrics_path, metrics)
    return BuiltModel(name, parameters, val["auc"], val["accuracy"], onnx_path, metrics_path)
