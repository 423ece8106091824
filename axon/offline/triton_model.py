"""Triton python-backend model: runs the exported model.onnx. Copied as ``1/model.py``.

This file runs inside Triton's python-backend stub, not inside axon, so it imports nothing
from axon. Parameters in config.pbtxt choose the engine:

- ``engine: onnxruntime`` (default): an onnxruntime session on the CPU (or CUDA if the
  installed onnxruntime has that provider and ``device: cuda`` is set);
- ``engine: torch``: the same MLP evaluated with torch from the ONNX file's own weights,
  on ``device`` (``cpu`` or ``cuda``), for GPU machines whose onnxruntime is CPU-only.

All requests Triton hands to one ``execute`` call (one dynamic batch) go through a single
model call, then the rows are split back to their requests in order. Each engine takes the
requests' input tensors and returns one output tensor per request.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

INPUT_NAME = "input"
OUTPUT_NAME = "output"


class _OnnxRuntimeEngine:
    def __init__(self, path, device, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise pb_utils.TritonModelException("device cuda asked for, but onnxruntime has no CUDAExecutionProvider; use engine torch")
            providers = ["CUDAExecutionProvider"]
        self._session = ort.InferenceSession(path, options, providers=providers)

    def __call__(self, inputs):
        arrays = [t.as_numpy() for t in inputs]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        out = np.ascontiguousarray(out, dtype=np.float32)
        tensors, offset = [], 0
        for rows in arrays:
            tensors.append(pb_utils.Tensor(OUTPUT_NAME, out[offset : offset + len(rows)]))
            offset += len(rows)
        return tensors


class _TorchEngine:
    """A tiny ONNX interpreter over torch for the ops our exported MLPs use."""

    def __init__(self, path, device, threads):
        import onnx
        import torch
        from onnx import numpy_helper

        if device == "cuda" and not torch.cuda.is_available():
            raise pb_utils.TritonModelException("device cuda asked for, but torch sees no CUDA device")
        torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        graph = onnx.load(path).graph
        self._values = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).to(self._device) for t in graph.initializer}
        self._nodes = []
        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self._values[node.output[0]] = torch.from_numpy(numpy_helper.to_array(attrs["value"]).copy()).to(self._device)
                continue
            self._nodes.append((node.op_type, list(node.input), list(node.output), attrs))

    def _op(self, op, args, attrs):
        torch = self._torch
        if op == "Gemm":
            a, b = args[0], args[1]
            if attrs.get("transA", 0):
                a = a.T
            if attrs.get("transB", 0):
                b = b.T
            out = attrs.get("alpha", 1.0) * (a @ b)
            if len(args) > 2:
                out = out + attrs.get("beta", 1.0) * args[2]
            return out
        simple = {
            "MatMul": lambda: args[0] @ args[1],
            "Add": lambda: args[0] + args[1],
            "Sub": lambda: args[0] - args[1],
            "Mul": lambda: args[0] * args[1],
            "Div": lambda: args[0] / args[1],
            "Relu": lambda: torch.relu(args[0]),
            "Sigmoid": lambda: torch.sigmoid(args[0]),
            "Identity": lambda: args[0],
        }
        if op not in simple:
            raise pb_utils.TritonModelException(f"engine torch does not implement ONNX op {op}")
        return simple[op]()

    def __call__(self, inputs):
        # DLPack in and out: no numpy in the data path, so the stub's numpy build can't matter
        # (with numpy 2 beside a stub built for numpy 1, numpy outputs arrived empty).
        torch = self._torch
        from torch.utils import dlpack

        with torch.inference_mode():
            parts = [dlpack.from_dlpack(t.to_dlpack()) for t in inputs]
            batch = parts[0] if len(parts) == 1 else torch.cat(parts)
            values = dict(self._values)
            values[INPUT_NAME] = batch.to(self._device, dtype=torch.float32)
            for op, names, outputs, attrs in self._nodes:
                values[outputs[0]] = self._op(op, [values[i] for i in names if i], attrs)
            out = values[OUTPUT_NAME].float().cpu()
        tensors = []
        for piece in torch.split(out, [len(p) for p in parts]):
            tensors.append(pb_utils.Tensor.from_dlpack(OUTPUT_NAME, dlpack.to_dlpack(piece.contiguous())))
        return tensors


ENGINES = {"onnxruntime": _OnnxRuntimeEngine, "torch": _TorchEngine}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        engine = params.get("engine", "onnxruntime")
        if engine not in ENGINES:
            raise pb_utils.TritonModelException(f"unknown engine {engine!r}; expected one of {sorted(ENGINES)}")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"model file not found: {path}")
        self._run = ENGINES[engine](path, params.get("device", "cpu"), int(params.get("threads", "1")))

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, INPUT_NAME) for r in requests]
        return [pb_utils.InferenceResponse(output_tensors=[t]) for t in self._run(inputs)]
