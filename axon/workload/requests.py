"""Requests as bytes: pre-serialised ModelInferRequests for any signature, their answers decoded,
and the local onnxruntime reference each answer is checked against.

Serialising once, before the run, keeps the hot path to sending bytes; the pool of distinct
bodies is bounded in count and in bytes (each body's serialised size, as held), and the record
says when the byte bound is what limited it. The input arrays a body was built from are not
kept (a server run sends only bytes): each request's reference answer is computed as its body
is built, so a pool of 1 MB requests holds its bodies and small answers, not its inputs twice.
"""

from __future__ import annotations

from collections.abc import Callable
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

Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # one request's inputs -> every output


@dataclass(frozen=True)
class Payloads:
    """The distinct request bodies of a run, their reference answers, and their size."""

    bodies: list[bytes]
    requests: list[dict[str, np.ndarray]]  # each body's input arrays: kept only when asked (an in-process run), else empty
    expected: list[dict[str, np.ndarray]] | None  # each body's reference answer (None: no reference)
    bytes_per_request: int  # the input tensors' bytes (a body adds a few dozen bytes of framing)
    limited_by_bytes: bool  # the byte bound, not the count bound or the rows, set len(bodies)


def build(
    model: str,
    signature: Signature,
    source: RequestSource,
    available: int | None,
    limit: int = MAX_DISTINCT_PAYLOADS,
    byte_limit: int = DEFAULT_PAYLOAD_BYTES,
    reference: Reference | None = None,
    keep_tensors: bool = False,
) -> Payloads:
    """Serialise up to ``limit`` distinct requests (``available`` of them exist; None: any number).

    Every output is asked for by name, so the answer carries all of them for the check. The
    bodies together stay within ``byte_limit`` (one body at least). ``reference`` answers each
    request as it is built; ``keep_tensors`` keeps the input arrays too.
    """
    if available == 0:
        raise AxonError("the inputs hold fewer rows than one request needs")
    first = source(0)
    size = sum(a.nbytes for a in first.values())
    first_body = _serialise(model, signature, first)
    by_bytes = max(1, byte_limit // len(first_body))
    want = min(limit, available if available is not None else limit)
    bodies, requests, expected = [], [], [] if reference is not None else None
    for i in range(min(want, by_bytes)):
        tensors = first if i == 0 else source(i)
        bodies.append(first_body if i == 0 else _serialise(model, signature, tensors))
        if expected is not None:
            expected.append(reference(tensors))
        if keep_tensors:
            requests.append(tensors)
    return Payloads(bodies, requests, expected, size, by_bytes < want)


def _serialise(model: str, signature: Signature, tensors: dict[str, np.ndarray]) -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, id="")
    for t in signature.inputs:
        array = tensors[t.name]
        # Shape and type only: the data travels in raw_input_contents.
        request.inputs.add(name=t.name, datatype=t.datatype, shape=list(array.shape))
        request.raw_input_contents.append(np.ascontiguousarray(array, dtype=t.dtype).tobytes())
    for t in signature.outputs:
        request.outputs.add(name=t.name)
    return request.SerializeToString()


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


def reference_of(onnx_path: Path | None, signature: Signature) -> Reference | None:
    """Local onnxruntime's answer to a request, every output; None when there is no model file."""
    if onnx_path is None or not Path(onnx_path).is_file():
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [t.name for t in signature.outputs]

    def answer(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = session.run(names, {t.name: np.ascontiguousarray(tensors[t.name], dtype=t.dtype) for t in signature.inputs})
        return {name: np.asarray(v, dtype=t.dtype) for name, v, t in zip(names, values, signature.outputs, strict=True)}

    return answer
