"""What the requests carry: rows of every input, given by the user or generated from the signature.

One shape for all sources: a dict of arrays, one per input name, whose first axis indexes
rows. A batched model's request takes ``rows_per_request`` consecutive rows of every input;
a model without a batch axis takes one entry (a whole request) at a time. The rows rotate
over the requests as the validation rows of `axon train` always have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from axon.errors import AxonError
from axon.workload.signature import Signature

# Generated integers stay small and non-negative: the likeliest values to be valid as counts,
# indices or categories. When they are not, the model's error says so and points to --input-data.
GENERATED_INT_HIGH = 16
GENERATED_NOTICE = "inputs generated from the signature (seed {seed}: floats ~ N(0,1), integers in [0,{high}), booleans at random); give --input-data FILE.npz to send real ones"
BAD_GENERATED_HINT = "the model refused generated inputs ({detail}); if an input must hold valid values (indices, counts, masks), give real ones with --input-data FILE.npz"

Rows = dict[str, np.ndarray]
RequestSource = Callable[[int], dict[str, np.ndarray]]


def per_request(signature: Signature, rows: Rows, shapes: dict[str, tuple[int, ...]]) -> tuple[RequestSource, int]:
    """Request ``i``'s tensors from ``rows``, and how many distinct requests the rows hold."""
    batched = signature.batched
    take = next(iter(shapes.values()))[0] if batched else 1

    def request(i: int) -> dict[str, np.ndarray]:
        if batched:
            return {name: np.ascontiguousarray(rows[name][i * take : (i + 1) * take]) for name in shapes}
        return {name: np.ascontiguousarray(rows[name][i]) for name in shapes}

    return request, min(len(rows[name]) for name in shapes) // take


def generated(signature: Signature, shapes: dict[str, tuple[int, ...]], seed: int) -> RequestSource:
    """Seeded requests generated from each input's datatype and shape: any count, reproducible."""

    def request(i: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, i])
        return {t.name: _random(rng, t.dtype, shapes[t.name]) for t in signature.inputs}

    return request


def _random(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, GENERATED_INT_HIGH, shape).astype(dtype)


def load_npz(path: Path, signature: Signature, shapes: dict[str, tuple[int, ...]]) -> Rows:
    """``--input-data FILE.npz``: one array per input name, rows along the first axis, checked now.

    Every problem is one line before any load: a missing input, a wrong datatype or shape, or
    fewer rows than one request needs.
    """
    path = Path(path)
    if not path.is_file():
        raise AxonError(f"--input-data {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise AxonError(f"--input-data {path}: not a numpy .npz file ({exc})") from None
    rows: Rows = {}
    for t in signature.inputs:
        if t.name not in arrays:
            raise AxonError(
                f"--input-data {path}: no array for input {t.name!r} (it holds: {', '.join(sorted(arrays)) or 'nothing'})"
            )
        a = arrays[t.name]
        if a.dtype != t.dtype:
            raise AxonError(f"--input-data {path}: input {t.name!r} is {a.dtype}, the model takes {t.datatype} ({t.dtype})")
        per_row = shapes[t.name][1:] if signature.batched else shapes[t.name]
        if tuple(a.shape[1:]) != tuple(per_row):
            axis = "rows" if signature.batched else "requests"
            raise AxonError(
                f"--input-data {path}: input {t.name!r} has shape {list(a.shape)}; expected [{axis}, {', '.join(map(str, per_row))}]"
            )
        need = shapes[t.name][0] if signature.batched else 1
        if len(a) < need:
            raise AxonError(f"--input-data {path}: input {t.name!r} has {len(a)} row(s), fewer than one request needs ({need})")
        rows[t.name] = a
    return rows
