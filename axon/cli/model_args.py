"""Which model a command measures, and what its requests carry: the options every measuring command shares.

- ``--model NAME`` (v1/v2 or any served name), or ``--onnx PATH``: the user's own file, served
  from a repository axon writes for it and checked against onnxruntime on the same file;
- ``--shape NAME:d1,d2`` for an input's open dimensions (batch axis excluded);
- ``--input-data FILE.npz``: one array per input name, rows along the first axis; without it,
  axon's trained models get their validation rows and every other model generated inputs.

Everything that can be checked before a server starts is checked in :func:`resolve`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from axon.errors import AxonError
from axon.names import DEFAULT_MODEL, served_name


def shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    from axon.workload.signature import parse_shape

    try:
        return parse_shape(text)
    except AxonError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--shape {text!r}: ")) from None


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"model name, or v1/v2 (default {DEFAULT_MODEL}; with --onnx, the name to serve it under)")
    p.add_argument("--onnx", type=Path, metavar="PATH", help="your own ONNX model: axon writes its repository (batching on and off, the same knobs), serves it and checks answers against onnxruntime")
    p.add_argument("--shape", type=shape_option, action="append", default=[], metavar="NAME:d1,d2", help="an input's open dimensions, batch axis excluded (repeatable)")
    p.add_argument("--input-data", type=Path, metavar="FILE.npz", help="the inputs to send: one array per input name, rows along the first axis (default: validation rows for axon's models, else generated from the signature, seeded)")


@dataclass
class ModelChoice:
    """The model a command measures, its feed, and where its repository and reference live."""

    name: str
    feed: object  # axon.workload.feed.Feed
    reference: Path | None
    dataset: dict
    artifacts: Path | None  # what make_server serves from (a written one for --onnx)
    batched: bool = True
    notices: list[str] = field(default_factory=list)
    _written: Path | None = None

    def close(self) -> None:
        """Remove the repository written for --onnx (the user's file is never touched)."""
        if self._written is not None:
            shutil.rmtree(self._written, ignore_errors=True)
            self._written = None


def resolve(args: argparse.Namespace, artifacts: Path | None, rows_per_request: int = 1, serving_options=None, serve: bool = True) -> ModelChoice:
    """Settle the model and its inputs from the options, every check made now, before any server.

    ``serve``: write a repository for an ``--onnx`` model (False for in-process commands).
    """
    import numpy as np

    from axon.engines.payloads import load_rows
    from axon.workload import inputs
    from axon.workload.feed import Feed

    shapes = dict(args.shape)
    if args.onnx is not None:
        from axon.offline import user_model
        from axon.offline.repository import ServingOptions

        (model,) = user_model.load([args.onnx], [args.model] if args.model else [])
        model.signature.check_supported(f"--onnx {args.onnx}")
        request_shapes = model.signature.request_shapes(rows_per_request, shapes, f"model {model.name!r}")
        rows = inputs.load_npz(args.input_data, model.signature, request_shapes) if args.input_data else None
        # With --url the server's own signature governs the requests; the file supplies the reference.
        feed = Feed(rows=rows, shapes=shapes, seed=args.seed, signature=None if getattr(args, "url", None) else model.signature)
        written = None
        if serve and not getattr(args, "url", None):
            written = Path(tempfile.mkdtemp(prefix="axon-onnx-"))
            user_model.write_artifacts([model], written, serving_options or ServingOptions())
        dataset = {"name": f"user model {args.onnx}", "payload_rows": f"--input-data {args.input_data}" if rows is not None else "generated"}
        notices = [] if rows is not None else [inputs.GENERATED_NOTICE.format(seed=args.seed, high=inputs.GENERATED_INT_HIGH)]
        return ModelChoice(model.name, feed, model.path, dataset, written, model.signature.batched, notices, written)
    name = served_name(args.model or DEFAULT_MODEL)
    reference = artifacts / "models" / name / "model.onnx" if artifacts else None
    trained = reference is not None and reference.is_file()
    if args.input_data is not None:
        # Checked against the signature once it is read (from the server), before the load.
        feed = Feed(shapes=shapes, seed=args.seed, input_data=args.input_data)
        return ModelChoice(name, feed, reference if trained else None, {"name": "given", "payload_rows": f"--input-data {args.input_data}"}, artifacts)
    if trained or (artifacts is None and name == served_name(name) and name.startswith("particle_classifier_")):
        features, dataset = load_rows(artifacts, args.seed)
        notices = [dataset["notice"]] if dataset.get("notice") else []
        return ModelChoice(name, Feed(rows=np.asarray(features), shapes=shapes, seed=args.seed), reference if trained else None, dataset, artifacts, notices=notices)
    # Any other served model: inputs generated from the signature the server reports.
    notice = inputs.GENERATED_NOTICE.format(seed=args.seed, high=inputs.GENERATED_INT_HIGH)
    return ModelChoice(name, Feed(shapes=shapes, seed=args.seed), None, {"name": "generated", "payload_rows": "generated"}, artifacts, notices=[notice])
