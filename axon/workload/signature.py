"""A model's signature: its inputs and outputs, read from where the model lives.

Two sources, one type:

- an ONNX file's graph (:func:`from_onnx`): names, element types and shapes; a first axis
  that is dynamic on every input and output is the batch axis;
- a served model's metadata and config (:func:`from_served`): Triton's datatypes, shapes
  and ``max_batch_size`` (0: the model has no batch axis).

Shapes here exclude the batch axis of a batched model, as in Triton's config (``dims``):
``-1`` marks a dimension the model leaves open. A request's shape is settled once per run by
:meth:`Signature.request_shapes`: the rows per request in front, and every other open
dimension given by the user (``--shape NAME:d1,d2``), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from axon.errors import AxonError

# Triton's datatype names and the numpy dtype each travels as in raw_input_contents.
NUMPY_OF: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
# onnxruntime's element type names ("tensor(float)") in Triton's words.
_FROM_ONNX = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
}
# Strings need a length-prefixed encoding per element and inputs that mean something to the
# model; generated ones would not, so they are refused rather than half supported.
UNSUPPORTED = {"BYTES": "BYTES (string) tensors are not supported: axon sends numeric and boolean tensors only"}
DEFAULT_MAX_BATCH = 256


class TensorRecord(TypedDict):
    name: str
    datatype: str
    shape: list[int]  # per request, the batch axis included when the model has one


class SignatureRecord(TypedDict):
    """What the result record keeps of a model's signature."""

    source: str  # "onnx" or "served"
    max_batch_size: int
    inputs: list[TensorRecord]
    outputs: list[dict]  # name and datatype (their shapes are the model's answer)
    bytes_per_request: int


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, Triton datatype and shape (batch axis excluded; -1 = open)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return NUMPY_OF[self.datatype]

    @property
    def open_dims(self) -> bool:
        return any(d < 0 for d in self.shape)


@dataclass(frozen=True)
class Signature:
    """A model's inputs and outputs, and whether its first axis is the batch (max_batch_size > 0)."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int
    source: str

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> Tensor:
        for t in self.inputs:
            if t.name == name:
                return t
        raise AxonError(f"the model has no input {name!r} (its inputs: {', '.join(t.name for t in self.inputs)})")

    def check_supported(self, what: str) -> None:
        """Refuse, in one line, a model axon cannot feed."""
        for t in self.inputs:
            if t.datatype in UNSUPPORTED:
                raise AxonError(f"{what}: input {t.name!r}: {UNSUPPORTED[t.datatype]}")
            if t.datatype not in NUMPY_OF:
                raise AxonError(f"{what}: input {t.name!r} has datatype {t.datatype}, which axon cannot send")
        for t in self.outputs:
            if t.datatype not in NUMPY_OF:
                raise AxonError(
                    f"{what}: output {t.name!r} has datatype {t.datatype}, which axon cannot check; {UNSUPPORTED.get(t.datatype, '')}".rstrip(
                        "; "
                    )
                )

    def request_shapes(
        self, rows_per_request: int, given: dict[str, tuple[int, ...]] | None = None, what: str = "the model"
    ) -> dict[str, tuple[int, ...]]:
        """Each input's shape in one request: rows in front (batched models), open dims from ``given``.

        ``given`` holds the shapes the user gave with ``--shape`` (batch axis excluded). An
        open dimension without one is a one-line error naming the input, before any load.
        """
        given = dict(given or {})
        unknown = sorted(set(given) - {t.name for t in self.inputs})
        if unknown:
            raise AxonError(
                f"--shape {unknown[0]}: {what} has no such input (its inputs: {', '.join(t.name for t in self.inputs)})"
            )
        if not self.batched and rows_per_request != 1:
            raise AxonError(
                f"{what} has no batch axis (max_batch_size 0): each request carries exactly its inputs' shapes, so --rows-per-request must be 1"
            )
        if self.batched and rows_per_request > self.max_batch_size:
            raise AxonError(f"--rows-per-request {rows_per_request} exceeds {what}'s max_batch_size {self.max_batch_size}")
        shapes = {}
        for t in self.inputs:
            shape = t.shape
            if t.name in given:
                g = given[t.name]
                if len(g) != len(shape):
                    raise AxonError(
                        f"--shape {t.name}: {len(g)} dimension(s) given, but the input has {len(shape)} {self._dims_hint(t)}"
                    )
                for want, have in zip(shape, g, strict=True):
                    if want >= 0 and want != have:
                        raise AxonError(f"--shape {t.name}: {list(g)} does not fit the input's fixed shape {list(shape)}")
                shape = g
            elif t.open_dims:
                raise AxonError(
                    f"input {t.name!r} has an open dimension {list(shape)} {self._dims_hint(t)}: give its size with --shape {t.name}:"
                    + ",".join(str(d if d >= 0 else 8) for d in shape)
                )
            shapes[t.name] = ((rows_per_request,) if self.batched else ()) + tuple(shape)
        return shapes

    def _dims_hint(self, t: Tensor) -> str:
        return "(batch axis excluded)" if self.batched else "(the model has no batch axis)"

    def as_record(self, shapes: dict[str, tuple[int, ...]], bytes_per_request: int) -> SignatureRecord:
        return {
            "source": self.source,
            "max_batch_size": self.max_batch_size,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(shapes[t.name])} for t in self.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype} for t in self.outputs],
            "bytes_per_request": bytes_per_request,
        }


def served_name_of(path: Path) -> str:
    """A Triton model name from a file name: its stem, with anything but [A-Za-z0-9_-] as '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem) or "model"


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME:d1,d2`` (as perf_analyzer's ``--shape``) -> (name, dims); a bad one is a one-line error."""
    name, sep, dims = text.rpartition(":")
    if not sep or not name:
        raise AxonError(f"--shape {text!r}: expected NAME:d1,d2,... (the input's dimensions, batch axis excluded)")
    try:
        values = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise AxonError(f"--shape {text!r}: dimensions must be whole numbers, e.g. {name}:16,7") from None
    if not values or any(v <= 0 for v in values):
        raise AxonError(f"--shape {text!r}: every dimension must be > 0")
    return name, values


def from_onnx(path: Path, max_batch_size: int = DEFAULT_MAX_BATCH) -> Signature:
    """The signature of an ONNX file; a batched model when every tensor's first axis is open.

    ``max_batch_size`` is what Triton will be told for a batched model (the served limit), not
    something the file says. A file that is missing or not ONNX is a one-line error.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise AxonError(f"--onnx {path}: no such file")
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidProtobuf, ...) for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AxonError(f"--onnx {path}: not a model onnxruntime can load ({first[:200]})") from None
    inputs = [(a.name, a.type, a.shape) for a in session.get_inputs()]
    outputs = [(a.name, a.type, a.shape) for a in session.get_outputs()]
    return signature_of_graph(inputs, outputs, max_batch_size, str(path))


def signature_of_graph(inputs: list, outputs: list, max_batch_size: int, where: str) -> Signature:
    """Signature from onnxruntime's (name, "tensor(type)", shape) triples; the batch axis found here."""

    def open_dim(d) -> bool:
        return not isinstance(d, int) or d < 0

    def datatype(kind: str) -> str:
        inner = kind.removeprefix("tensor(").removesuffix(")")
        return _FROM_ONNX.get(inner, inner.upper())

    everything = inputs + outputs
    batched = all(len(shape) >= 1 and open_dim(shape[0]) for _, _, shape in everything)

    def tensor(name, kind, shape) -> Tensor:
        dims = tuple(-1 if open_dim(d) else int(d) for d in shape)
        return Tensor(name, datatype(kind), dims[1:] if batched else dims)

    if not inputs:
        raise AxonError(f"{where}: the model has no inputs")
    return Signature(
        tuple(tensor(*t) for t in inputs), tuple(tensor(*t) for t in outputs), max_batch_size if batched else 0, "onnx"
    )


def from_served(endpoints, model: str, timeout_s: float = 10.0) -> Signature:
    """The signature of a model a Triton serves, from its metadata and config.

    A model the server does not serve (or serves but not ready) is a one-line error listing
    the models it does serve.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    with grpcclient.InferenceServerClient(
        endpoints.grpc, ssl=endpoints.tls, root_certificates=endpoints.ca_file if endpoints.tls else None
    ) as client:
        headers = dict(endpoints.headers) or None
        try:
            metadata = client.get_model_metadata(model, headers=headers, client_timeout=timeout_s, as_json=True)
            config = client.get_model_config(model, headers=headers, client_timeout=timeout_s, as_json=True)["config"]
        except InferenceServerException as exc:
            raise AxonError(
                f"model {model!r} is not served at {endpoints.grpc} ({exc.message()}); it serves: {served_models(endpoints)}"
            ) from None
    max_batch = int(config.get("max_batch_size", 0) or 0)

    def tensor(entry: dict) -> Tensor:
        shape = tuple(int(d) for d in entry.get("shape", []))
        # Metadata shapes carry the batch axis (-1) of a batched model; config dims do not.
        return Tensor(entry["name"], entry["datatype"], shape[1:] if max_batch > 0 else shape)

    return Signature(
        tuple(tensor(e) for e in metadata.get("inputs", [])),
        tuple(tensor(e) for e in metadata.get("outputs", [])),
        max_batch,
        "served",
    )


def served_models(endpoints, timeout_s: float = 5.0) -> str:
    """The models a server has ready, for a message ("a, b", or why none can be listed)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        with grpcclient.InferenceServerClient(
            endpoints.grpc, ssl=endpoints.tls, root_certificates=endpoints.ca_file if endpoints.tls else None
        ) as client:
            index = client.get_model_repository_index(
                headers=dict(endpoints.headers) or None, client_timeout=timeout_s, as_json=True
            ).get("models", [])
    except InferenceServerException as exc:
        return f"(its model list could not be read: {exc.message()})"
    ready = sorted(m["name"] for m in index if m.get("state") == "READY")
    return ", ".join(ready) if ready else "no model that is ready"
