"""Small ONNX models that are not axon's MLPs, written with onnx.helper (no torch), for the any-model tests.

- :func:`tagger`: batched; three inputs of three datatypes (FP32 points with an open number of
  points, a BOOL mask over them, INT64 ids) and two outputs (FP32 score, INT64 count). Every
  row's answer depends on that row only, so a dynamic batch gives the same answer.
- :func:`fixed`: no batch axis (its first dimension is fixed): FP32 [4, 3] -> FP32 [4, 3].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tagger(path: Path) -> Path:
    axes = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["maskf3"]),
        helper.make_node("Mul", ["points", "maskf3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax2"], ["per_point"], keepdims=0),
        helper.make_node("ReduceSum", ["per_point", "ax1"], ["sum_points"], keepdims=1),
        helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["idsf", "ax1"], ["sum_ids"], keepdims=1),
        helper.make_node("Mul", ["sum_ids", "hundredth"], ["ids_part"]),
        helper.make_node("Add", ["sum_points", "ids_part"], ["score"]),
        helper.make_node("Cast", ["mask"], ["mask64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["mask64", "ax1"], ["count"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tagger",
        inputs=[
            helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", "n_points", 3]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "n_points"]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4]),
        ],
        outputs=[
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("count", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=[axes("ax1", [1]), axes("ax2", [2]), numpy_helper.from_array(np.array(0.01, dtype=np.float32), "hundredth")],
    )
    return _save(graph, path)


def fixed(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "fixed",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
        initializer=[numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")],
    )
    return _save(graph, path)
