"""Which model a command measures, and what its requests carry: the options every measuring command shares.

- ``--model NAME`` (v1/v2 or any served name), or ``--onnx PATH``: the user's own file, served
  from a repository axon writes for it and checked against onnxruntime on the same file;
- ``--shape NAME:d1,d2`` for an input's open dimensions (batch axis excluded);
- ``--input-data FILE.npz``: one array per input name, rows along the first axis; without it,
  axon's trained models get their validation rows and every other model generated inputs.

Everything that can be checked before a server starts is checked in
:func:`axon.engines.model_choice.resolve`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.errors import AxonError
from axon.names import DEFAULT_MODEL


def shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    from axon.workload.signature import parse_shape

    try:
        return parse_shape(text)
    except AxonError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--shape {text!r}: ")) from None


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"model name, or v1/v2 (default {DEFAULT_MODEL}; with --onnx, the name to serve it under)")
    p.add_argument(
        "--onnx",
        type=Path,
        metavar="PATH",
        help="your own ONNX model: axon writes its repository (batching on and off, the same knobs), serves it and checks answers against onnxruntime",
    )
    p.add_argument(
        "--shape",
        type=shape_option,
        action="append",
        default=[],
        metavar="NAME:d1,d2",
        help="an input's open dimensions, batch axis excluded (repeatable)",
    )
    p.add_argument(
        "--input-data",
        type=Path,
        metavar="FILE.npz",
        help="the inputs to send: one array per input name, rows along the first axis (default: validation rows for axon's models, else generated from the signature, seeded)",
    )
