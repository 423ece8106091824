"""Where the rows come from (the artifacts of `axon train`) and how a body travels (gRPC framing).

Lives below the engines and the faces (CLI, study, pytest plugin) alike: each of them needs
the same rows; what a request carries for any model is built in :mod:`axon.workload`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.offline import data
from axon.offline.pipeline import MANIFEST_FILE, MODEL_INPUTS_FILE, VALIDATION_ROWS_FILE
from axon.workload.requests import MAX_DISTINCT_PAYLOADS  # noqa: F401 (the engines' bound on distinct bodies)

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
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
        return events.features, {
            **events.info.as_dict(),
            "payload_rows": "generated (no artifacts)",
            "notice": SYNTHETIC_NOTICE.format(rows=SYNTHETIC_PAYLOAD_ROWS),
        }
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
        raise AxonError(
            f"{where}{manifest} is damaged ({type(exc).__name__}: {exc}); rerun `axon train` to write it again"
        ) from None
    return info


def grpc_frame(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (no compression flag, 4-byte big-endian length), as h2load posts it."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def model_inputs(artifacts: Path | None, model: str) -> Path | None:
    """The validation inputs `axon train` kept for a model with inputs of its own (the point-cloud tagger), if any."""
    if artifacts is None:
        return None
    path = Path(artifacts) / "models" / model / MODEL_INPUTS_FILE
    return path if path.is_file() else None


def trained_feed(artifacts: Path | None, model: str, seed: int = 0, option: str = "--artifacts"):
    """What a model `axon train` built is fed: its own validation inputs, else the validation rows.

    Returns (Feed, dataset dict); without artifacts, the generated rows of :func:`load_rows`.
    """
    from axon.workload.feed import Feed

    own = model_inputs(artifacts, model)
    if own is not None:
        return Feed(input_data=own, seed=seed), {"name": "synthetic jets", "payload_rows": f"validation inputs ({own})"}
    features, dataset = load_rows(artifacts, seed, option)
    return Feed(rows=features, seed=seed), dataset
