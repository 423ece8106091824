"""Requests as bytes: pre-serialised ModelInferRequests for any signature, their answers decoded,
and the local onnxruntime reference each answer is checked against.

Serialising once, before the run, keeps the hot path to sending bytes; the pool of distinct
bodies is bounded in count and in bytes, and the record says when the byte bound is what
limited it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.workload.inputs import RequestSource
from axon.workload.signature import NUMPY_OF, Signature

MAX_DISTINCT_PAYLOADS = 1024
DEFAULT_PAYLOAD_BYTES = 256 * 2**20  # the pool of distinct bodies, all together

# How close a served answer must be to local onnxruntime's, by datatype: the server runs the
# same graph, but a dynamic batch may sum in another order. Integers and booleans are exact.
TOLERANCE = {"FP16": (1e-2, 1e-3), "FP32": (1e-4, 1e-5), "FP64": (1e-9, 1e-12)}  # (rtol, atol)


@dataclass(frozen=True)
class Payloads:
    """The distinct request bodies of a run, each request's input tensors, and their size."""

    bodies: list[bytes]
    requests: list[dict[str, np.ndarray]]
    bytes_per_request: int
    limited_by_bytes: bool  # the byte bound, not the count bound or the rows, set len(bodies)


def build(model: str, signature: Signature, source: RequestSource, available: int | None, limit: int = MAX_DISTINCT_PAYLOADS, byte_limit: int = DEFAULT_PAYLOAD_BYTES) -> Payloads:
    """Serialise up to ``limit`` distinct requests (``available`` of them exist; None: any number).

    Every output is asked for by name, so the answer carries all of them for the check.
    """
    from tritonclient.grpc import service_pb2

    if available == 0:
        raise AxonError("the inputs hold fewer rows than one request needs")
    first = source(0)
    size = sum(a.nbytes for a in first.values())
    by_bytes = max(1, byte_limit // max(size, 1))
    n = min(limit, by_bytes, available if available is not None else limit)
    bodies, requests = [], []
    for i in range(n):
        tensors = first if i == 0 else source(i)
        request = service_pb2.ModelInferRequest(model_name=model, id="")
        for t in signature.inputs:
            array = tensors[t.name]
            # Shape and type only: the data travels in raw_input_contents.
            request.inputs.add(name=t.name, datatype=t.datatype, shape=list(array.shape))
            request.raw_input_contents.append(np.ascontiguousarray(array, dtype=t.dtype).tobytes())
        for t in signature.outputs:
            request.outputs.add(name=t.name)
        bodies.append(request.SerializeToString())
        requests.append(tensors)
    return Payloads(bodies, requests, size, by_bytes < min(limit, available if available is not None else limit))


def decode(response: bytes) -> dict[str, np.ndarray]:
    """Every output tensor of a serialised ModelInferResponse, by name."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferResponse.FromString(response)
    out = {}
    for i, tensor in enumerate(message.outputs):
        dtype = NUMPY_OF.get(tensor.datatype)
        if dtype is None or i >= len(message.raw_output_contents):
            continue
        out[tensor.name] = np.frombuffer(message.raw_output_contents[i], dtype=dtype).reshape(tuple(tensor.shape))
    return out


def matches(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    """Every expected output present, of its shape, and within its datatype's tolerance."""
    for name, want in expected.items():
        have = got.get(name)
        if have is None or have.shape != want.shape:
            return False
        datatype = next((k for k, v in NUMPY_OF.items() if v == want.dtype), None)
        if datatype in TOLERANCE:
            rtol, atol = TOLERANCE[datatype]
            if not np.allclose(have, want, rtol=rtol, atol=atol, equal_nan=True):
                return False
        elif not np.array_equal(have, want):
            return False
    return True


def reference_outputs(onnx_path: Path | None, signature: Signature, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]] | None:
    """Local onnxruntime's answer to each request, every output, or None when there is no model file."""
    if onnx_path is None or not Path(onnx_path).is_file():
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [t.name for t in signature.outputs]
    out = []
    for tensors in requests:
        values = session.run(names, {t.name: np.ascontiguousarray(tensors[t.name], dtype=t.dtype) for t in signature.inputs})
        out.append({name: np.asarray(v, dtype=t.dtype) for name, v, t in zip(names, values, signature.outputs, strict=True)})
    return out
