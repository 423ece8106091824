"""What every engine sends: real validation rows as pre-serialised ModelInferRequests.

Lives below the engines and the faces (CLI, study, pytest plugin) alike: each of them needs
the same rows, the same bytes and the same local onnxruntime reference.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.offline import data
from axon.offline.export import INPUT_NAME, OUTPUT_NAME
from axon.offline.pipeline import MANIFEST_FILE, VALIDATION_ROWS_FILE

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_DISTINCT_PAYLOADS = 1024
SYNTHETIC_PAYLOAD_ROWS = 4096


DEFAULT_ARTIFACTS = Path("artifacts")
SYNTHETIC_NOTICE = (
    "no artifacts (no --artifacts given and no ./artifacts): requests carry {rows:,} generated synthetic rows "
    "and responses are not checked; give the output of `axon train` to send and check real validation rows"
)


def resolve_artifacts(given: Path | None, option: str = "--artifacts") -> Path | None:
    """The artifacts folder to use: the one given, which must exist; else ./artifacts if it exists; else None.

    A path the user typed that does not exist is a mistake, never a reason to measure
    something else; only when no path was given may a caller fall back (and say so).
    """
    if given is not None:
        if not Path(given).is_dir():
            raise AxonError(f"{option} {given}: no such folder (expected the output of `axon train`)")
        return Path(given)
    return DEFAULT_ARTIFACTS if DEFAULT_ARTIFACTS.is_dir() else None


def load_rows(artifacts: Path | None, seed: int = 0, option: str = "--artifacts") -> tuple[np.ndarray, dict]:
    """Validation rows from `axon train`; synthetic rows only when there are no artifacts at all.

    The synthetic fallback is loud: the dataset dict carries a ``notice`` that faces print and
    the record keeps. Artifacts without validation rows are an error, not a fallback.
    """
    if artifacts is None:
        events = data.synthetic(SYNTHETIC_PAYLOAD_ROWS, seed)
        return events.features, {**events.info.as_dict(), "payload_rows": "generated (no artifacts)", "notice": SYNTHETIC_NOTICE.format(rows=SYNTHETIC_PAYLOAD_ROWS)}
    rows_file = Path(artifacts) / VALIDATION_ROWS_FILE
    manifest = Path(artifacts) / MANIFEST_FILE
    if not rows_file.is_file():
        raise AxonError(f"{option} {artifacts}: no {VALIDATION_ROWS_FILE} there; is it the output of `axon train`?")
    with np.load(rows_file) as npz:
        features = npz["features"]
    return features, {**read_manifest_dataset(manifest, option, artifacts), "payload_rows": "validation split"}


def read_manifest_dataset(manifest: Path, option: str = "--artifacts", artifacts: Path | None = None) -> dict:
    """The dataset `axon train` wrote into manifest.json; a damaged file is a one-line error, not a traceback."""
    if not manifest.is_file():
        return {"name": "unknown"}
    try:
        info = json.loads(manifest.read_text())["dataset"]
        if not isinstance(info, dict):
            raise TypeError("dataset is not an object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        where = f"{option} {artifacts}: " if artifacts is not None else ""
        raise AxonError(f"{where}{manifest} is damaged ({type(exc).__name__}: {exc}); rerun `axon train` to write it again") from None
    return info


def build_payloads(model: str, features: np.ndarray, rows_per_request: int, limit: int = MAX_DISTINCT_PAYLOADS) -> tuple[list[bytes], list[np.ndarray]]:
    """Serialised ModelInferRequests over real rows, and the rows each one carries."""
    from tritonclient.grpc import service_pb2

    rows = np.ascontiguousarray(features, dtype=np.float32)
    n = min(limit, len(rows) // rows_per_request)
    if n == 0:
        raise AxonError(f"need at least {rows_per_request} validation rows, have {len(rows)}")
    payloads, chunks = [], []
    for i in range(n):
        chunk = rows[i * rows_per_request : (i + 1) * rows_per_request]
        request = service_pb2.ModelInferRequest(model_name=model, id="")
        # Shape and type only: the data travels in raw_input_contents.
        request.inputs.add(name=INPUT_NAME, datatype="FP32", shape=list(chunk.shape))
        request.outputs.add(name=OUTPUT_NAME)
        request.raw_input_contents.append(chunk.tobytes())
        payloads.append(request.SerializeToString())
        chunks.append(chunk)
    return payloads, chunks


def output_of(response: bytes) -> np.ndarray:
    """The output tensor of a serialised ModelInferResponse."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferResponse.FromString(response)
    shape = tuple(message.outputs[0].shape)
    return np.frombuffer(message.raw_output_contents[0], dtype=np.float32).reshape(shape)


def grpc_frame(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (no compression flag, 4-byte big-endian length), as h2load posts it."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def reference_outputs(onnx_path: Path | None, chunks: list[np.ndarray]) -> list[np.ndarray] | None:
    """Local onnxruntime outputs for each payload's rows, or None when there is no model file."""
    if onnx_path is None or not Path(onnx_path).is_file():
        return None
    from axon.offline import export

    sess = export.session(Path(onnx_path))
    return [sess.run([OUTPUT_NAME], {INPUT_NAME: c})[0] for c in chunks]
