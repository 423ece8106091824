"""A run's feed: which inputs its requests carry, settled once against the model's signature.

Faces say where inputs come from (:class:`Feed`); :func:`settle` reads the signature (from the
user's ONNX file, or from the server), fixes each input's per-request shape, builds the
distinct request bodies and the local reference answers, and says what it chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.workload import inputs, requests
from axon.workload.signature import Signature, SignatureRecord, from_served


@dataclass(frozen=True)
class Feed:
    """Where a run's inputs come from.

    ``rows``: given rows (the validation rows of `axon train` as a bare array for a one-input
    model, or ``--input-data``'s arrays by input name); None: generated from the signature,
    seeded by ``seed``. ``shapes``: ``--shape`` values (batch axis excluded). ``signature``:
    known already (an ONNX file the user gave); None: read from the server.
    """

    rows: np.ndarray | dict[str, np.ndarray] | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    signature: Signature | None = None
    input_data: Path | None = None  # the --input-data file, read once the signature is known


@dataclass(frozen=True)
class Settled:
    """What the requests carry, and what the record keeps of it."""

    signature: Signature
    payloads: requests.Payloads
    expected: list[dict[str, np.ndarray]] | None
    record: SignatureRecord
    notice: str | None  # said once by the face, kept in the record


def as_feed(value: Feed | np.ndarray | None) -> Feed:
    """A bare array of rows (the one-input models' validation rows) as a Feed."""
    if isinstance(value, Feed):
        return value
    return Feed(rows=value)


def settle(
    feed: Feed,
    model: str,
    endpoints,
    rows_per_request: int,
    limit: int,
    reference_onnx: Path | None,
    byte_limit: int = requests.DEFAULT_PAYLOAD_BYTES,
    keep_tensors: bool = False,
) -> Settled:
    """Signature, shapes, bodies and reference answers for one run; a problem is one line, before any load.

    ``keep_tensors``: keep each request's input arrays too (an in-process run sends arrays, not bytes).
    """
    signature = feed.signature or from_served(endpoints, model)
    signature.check_supported(f"model {model!r}")
    shapes = signature.request_shapes(rows_per_request, feed.shapes, f"model {model!r}")
    notice = None
    rows = feed.rows
    if feed.input_data is not None:
        rows = inputs.load_npz(feed.input_data, signature, shapes)
    if isinstance(rows, np.ndarray):
        if len(signature.inputs) != 1:
            names = ", ".join(t.name for t in signature.inputs)
            raise AxonError(
                f"model {model!r} takes {len(signature.inputs)} inputs ({names}); axon's validation rows feed one-input models only: give --input-data FILE.npz, or leave inputs to be generated"
            )
        only = signature.inputs[0]
        want = shapes[only.name][1:] if signature.batched else shapes[only.name]
        if rows.shape[1:] != tuple(want):
            raise AxonError(
                f"model {model!r}: input {only.name!r} takes rows of shape {list(want)}, the validation rows are {list(rows.shape[1:])}; give --input-data FILE.npz, or leave inputs to be generated"
            )
        rows = {only.name: np.ascontiguousarray(rows, dtype=only.dtype)}
    if rows is None:
        source, available = inputs.generated(signature, shapes, feed.seed), None
        notice = inputs.GENERATED_NOTICE.format(seed=feed.seed, high=inputs.GENERATED_INT_HIGH)
    else:
        source, available = inputs.per_request(signature, rows, shapes)
    reference = _said_in_one_line(requests.reference_of(reference_onnx, signature), model, generated=rows is None)
    payloads = requests.build(
        model,
        signature,
        source,
        available,
        limit=max(limit, 1),
        byte_limit=byte_limit,
        reference=reference,
        keep_tensors=keep_tensors,
    )
    if payloads.limited_by_bytes:
        bound = f"{byte_limit / 2**20:.0f} MiB"
        notice = "; ".join(
            filter(
                None,
                [
                    notice,
                    f"{len(payloads.bodies)} distinct request bodies ({payloads.bytes_per_request:,} bytes each): the {bound} payload pool bound limits them",
                ],
            )
        )
    expected = payloads.expected
    return Settled(signature, payloads, expected, signature.as_record(shapes, payloads.bytes_per_request), notice)


def _said_in_one_line(reference: requests.Reference | None, model: str, generated: bool) -> requests.Reference | None:
    """The reference, its refusal of the inputs (onnxruntime's own error types) said in one line."""
    if reference is None:
        return None

    def answer(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return reference(tensors)
        except Exception as exc:  # onnxruntime's own error types: the inputs are not what the model accepts
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if generated:
                raise AxonError(inputs.BAD_GENERATED_HINT.format(detail=f"local onnxruntime: {detail}")) from None
            raise AxonError(f"local onnxruntime refused the given inputs of model {model!r}: {detail}") from None

    return answer
