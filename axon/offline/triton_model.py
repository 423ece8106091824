"""Triton python-backend model: runs the exported model.onnx. Copied as ``1/model.py``.

This file runs inside Triton's python-backend stub, not inside axon, so it imports nothing
from axon. Parameters in config.pbtxt choose the engine:

- ``engine: onnxruntime`` (default): an onnxruntime session on the CPU (or CUDA if the
  installed onnxruntime has that provider and ``device: cuda`` is set);
- ``engine: torch``: the same MLP evaluated with torch from the ONNX file's own weights,
  on ``device`` (``cpu`` or ``cuda``), for GPU machines whose onnxruntime is CPU-only.

Inputs and outputs are the ones the model's config lists, so any ONNX model is served. All
requests Triton hands to one ``execute`` call (one dynamic batch) go through a single model
call when the model has a batch axis, then the rows are split back to their requests in order;
a model without one runs each request on its own. Each engine takes the requests' input
tensors by name and returns each request's outputs by name.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class _OnnxRuntimeEngine:
    """Any ONNX model: every input and output by name, as the model's config lists them."""

    def __init__(self, path, device, threads, inputs, outputs, batched):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise pb_utils.TritonModelException(
                    "device cuda asked for, but onnxruntime has no CUDAExecutionProvider; use engine torch"
                )
            providers = ["CUDAExecutionProvider"]
        self._session = ort.InferenceSession(path, options, providers=providers)
        self._inputs, self._outputs, self._batched = inputs, outputs, batched

    def _run(self, feeds):
        values = self._session.run(self._outputs, {name: np.ascontiguousarray(a) for name, a in feeds.items()})
        return dict(zip(self._outputs, values))

    def __call__(self, requests):
        """One output dict per request; a dynamic batch goes through one model call when it can."""
        feeds = [{name: t.as_numpy() for name, t in r.items()} for r in requests]
        same = self._batched and all(all(f[n].shape[1:] == feeds[0][n].shape[1:] for n in self._inputs) for f in feeds)
        if len(feeds) == 1 or not same:
            # No batch axis (or requests of different shapes): each request on its own.
            return [self._run(f) for f in feeds]
        merged = self._run({n: np.concatenate([f[n] for f in feeds]) for n in self._inputs})
        out, offset = [], 0
        for f in feeds:
            rows = len(f[self._inputs[0]])
            out.append({n: v[offset : offset + rows] for n, v in merged.items()})
            offset += rows
        return out


class _TorchEngine:
    """A tiny ONNX interpreter over torch for the ops our exported MLPs use."""

    def __init__(self, path, device, threads, inputs, outputs, batched):
        import onnx
        import torch
        from onnx import numpy_helper

        if device == "cuda" and not torch.cuda.is_available():
            raise pb_utils.TritonModelException("device cuda asked for, but torch sees no CUDA device")
        if len(inputs) != 1 or len(outputs) != 1 or not batched:
            raise pb_utils.TritonModelException(
                "engine torch runs axon's MLPs (one batched input, one output); use engine onnxruntime for other models"
            )
        self._input, self._output = inputs[0], outputs[0]
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

    def __call__(self, requests):
        # DLPack in and out: no numpy in the data path, so the stub's numpy build can't matter
        # (with numpy 2 beside a stub built for numpy 1, numpy outputs arrived empty).
        torch = self._torch
        from torch.utils import dlpack

        with torch.inference_mode():
            parts = [dlpack.from_dlpack(r[self._input].to_dlpack()) for r in requests]
            batch = parts[0] if len(parts) == 1 else torch.cat(parts)
            values = dict(self._values)
            values[self._input] = batch.to(self._device, dtype=torch.float32)
            for op, names, outputs, attrs in self._nodes:
                values[outputs[0]] = self._op(op, [values[i] for i in names if i], attrs)
            out = values[self._output].float().cpu()
        return [{self._output: piece.contiguous()} for piece in torch.split(out, [len(p) for p in parts])]

    @staticmethod
    def tensor(name, value):
        from torch.utils import dlpack

        return pb_utils.Tensor.from_dlpack(name, dlpack.to_dlpack(value))


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
        inputs = [i["name"] for i in config.get("input", [])]
        outputs = [o["name"] for o in config.get("output", [])]
        self._inputs = inputs
        self._run = ENGINES[engine](
            path,
            params.get("device", "cpu"),
            int(params.get("threads", "1")),
            inputs,
            outputs,
            int(config.get("max_batch_size", 0)) > 0,
        )
        self._tensor = getattr(self._run, "tensor", pb_utils.Tensor)

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name) for name in self._inputs} for r in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[self._tensor(n, v) for n, v in out.items()]) for out in self._run(feeds)
        ]
