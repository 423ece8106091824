"""ONNX export (opset 17, dynamic batch) and its validation against torch and onnxruntime."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from axon.offline.data import N_FEATURES

if TYPE_CHECKING:
    import torch
from axon.errors import AxonError

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
VALIDATION_BATCHES = (1, 7, 256)
ATOL = 1e-5


class ExportError(AxonError):
    """The exported graph is not what Triton will be asked to serve."""


def export_onnx(model: torch.nn.Module, path: Path) -> Path:
    """Export ``model`` (raw features -> probability) to ``path``: FP32 [batch, 28] -> [batch, 1]."""
    import torch  # here, not at the top: benchmarking needs session() and the names, not torch

    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, N_FEATURES, dtype=torch.float32)
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is legacy; it is the one without extra deps.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session, the same way the embedded server's model.py builds one."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dim_is_dynamic(dim) -> bool:
    return dim.HasField("dim_param") or not dim.HasField("dim_value")


def validate(model: torch.nn.Module, path: Path, features: np.ndarray) -> dict:
    """Check the exported file: checker, opset, dynamic batch, and torch == onnxruntime.

    ``features`` are real rows (at least max(VALIDATION_BATCHES) of them).
    Returns a small report for the metrics file; raises ExportError on any failure.
    """
    import torch

    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker failed: {exc}") from None
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise ExportError(f"{path}: opset {opset}, expected {OPSET}")
    for value, width in ((proto.graph.input[0], N_FEATURES), (proto.graph.output[0], 1)):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2 or not _dim_is_dynamic(dims[0]) or dims[1].dim_value != width:
            raise ExportError(f"{path}: {value.name} must be [batch, {width}] with a dynamic batch, got {dims}")
    if len(features) < max(VALIDATION_BATCHES):
        raise ExportError(f"need {max(VALIDATION_BATCHES)} rows to validate, got {len(features)}")
    sess = session(path)
    worst = 0.0
    for batch in VALIDATION_BATCHES:
        rows = np.ascontiguousarray(features[:batch], dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(rows)).numpy()
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: rows})
        if got.shape != (batch, 1):
            raise ExportError(f"{path}: output shape {got.shape} for batch {batch}, expected ({batch}, 1)")
        diff = float(np.max(np.abs(got - expected)))
        worst = max(worst, diff)
        if diff > ATOL:
            raise ExportError(f"{path}: onnxruntime differs from torch by {diff:.3g} > {ATOL} at batch {batch}")
    return {"opset": OPSET, "batches_checked": list(VALIDATION_BATCHES), "max_abs_diff": worst}
