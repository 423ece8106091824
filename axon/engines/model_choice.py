"""Which model a command measures and what its requests carry, settled before any server starts.

Every measuring face (bench, direct, tune, and through its own options the pytest plugin) names
a model the same ways: one of axon's trained models (fed its validation rows or inputs), any
model a server serves (inputs generated from the served signature), or the user's ONNX file
(served from a repository written for it, checked against onnxruntime on the same file).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from axon.errors import AxonError
from axon.names import DEFAULT_MODEL, MODEL_PREFIX, served_name


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
    path: object = None  # a trigger path (axon.workload.path.TriggerPath): feed and reference are then dicts by model
    models: list[str] = field(default_factory=list)  # what the server must serve

    def close(self) -> None:
        """Remove the repository written for --onnx (the user's file is never touched)."""
        if self._written is not None:
            shutil.rmtree(self._written, ignore_errors=True)
            self._written = None


def path_feeds(path, artifacts: Path | None, seed: int = 0, any_served: bool = False) -> tuple[dict, dict, list, list[str]]:
    """Each model of a path: its feed and reference, the user's models it calls, and the trained ones.

    A model that is neither axon's (in ``artifacts``) nor an ``onnx =`` file is an error, unless
    ``any_served`` (a server at --url may serve anything: inputs generated, unchecked).
    """
    from axon.engines.payloads import trained_feed
    from axon.offline.user_model import load as load_user
    from axon.workload.feed import Feed

    files = {c.model: c.onnx for s in path.steps for c in s.calls if c.onnx is not None}
    users = load_user(list(files.values()), list(files)) if files else []
    feeds, references, trained = {}, {}, []
    for user in users:
        user.signature.check_supported(f"--path {path.source}: {user.name}")
        feeds[user.name], references[user.name] = Feed(seed=seed, signature=None if any_served else user.signature), user.path
    for model in path.models:
        if model in files:
            continue
        reference = artifacts / "models" / model / "model.onnx" if artifacts else None
        if reference is not None and reference.is_file():
            feeds[model], _ = trained_feed(artifacts, model, seed)
            references[model] = reference
            trained.append(model)
        elif any_served:
            feeds[model], references[model] = Feed(seed=seed), None
        else:
            where = f"in {artifacts}" if artifacts else "(no artifacts: run `axon train`)"
            raise AxonError(
                f"--path {path.source}: model {model!r} is neither one `axon train` built {where} nor an onnx = file; with --url, any model the server serves"
            )
    return feeds, references, users, trained


def resolve_path(args, artifacts: Path | None, serving_options=None) -> ModelChoice:
    """A trigger path's models, their inputs and references; a repository written for its ONNX calls."""
    from axon.workload.path import load

    return resolve_trigger(
        load(args.path, served_name), artifacts, getattr(args, "url", None), getattr(args, "seed", 0), serving_options
    )


def resolve_trigger(path, artifacts: Path | None, url: str | None = None, seed: int = 0, serving_options=None) -> ModelChoice:
    """A trigger path already read (or built: ``axon size`` sizes one model as a one-call path)."""
    from axon.workload import inputs

    feeds, references, users, trained = path_feeds(path, artifacts, seed, bool(url))
    notices, written = [], None
    if any(f.rows is None and f.input_data is None for f in feeds.values()):
        notices.append(
            inputs.GENERATED_NOTICE.format(seed=seed, high=inputs.GENERATED_INT_HIGH) + " (models without validation inputs)"
        )
    if users and not url:
        from axon.offline import user_model
        from axon.offline.repository import ServingOptions

        written = Path(tempfile.mkdtemp(prefix="axon-path-"))
        user_model.write_artifacts(users, written, serving_options or ServingOptions())
        user_model.with_trained(written, artifacts, trained)
    dataset = {
        "name": f"trigger path {path.name}",
        "payload_rows": "per model: validation rows or inputs where axon trained it, else generated",
    }
    return ModelChoice(
        f"path:{path.name}", feeds, references, dataset, written or artifacts, True, notices, written, path, path.models
    )


def resolve(args, artifacts: Path | None, rows_per_request: int = 1, serving_options=None, serve: bool = True) -> ModelChoice:
    """Settle the model and its inputs from a face's options, every check made now, before any server.

    ``args`` carries ``model``, ``onnx``, ``shape`` (a list of (name, dims)), ``input_data``,
    ``seed`` and, where the face has it, ``url``.

    ``serve``: write a repository for an ``--onnx`` model (False for in-process commands).
    """
    from axon.engines.payloads import trained_feed
    from axon.workload import inputs
    from axon.workload.feed import Feed

    shapes = dict(args.shape)
    seed = getattr(args, "seed", 0)
    if args.onnx is not None:
        from axon.offline import user_model
        from axon.offline.repository import ServingOptions

        (model,) = user_model.load([args.onnx], [args.model] if args.model else [])
        model.signature.check_supported(f"--onnx {args.onnx}")
        request_shapes = model.signature.request_shapes(rows_per_request, shapes, f"model {model.name!r}")
        rows = inputs.load_npz(args.input_data, model.signature, request_shapes) if args.input_data else None
        # With --url the server's own signature governs the requests; the file supplies the reference.
        feed = Feed(rows=rows, shapes=shapes, seed=seed, signature=None if getattr(args, "url", None) else model.signature)
        written = None
        if serve and not getattr(args, "url", None):
            written = Path(tempfile.mkdtemp(prefix="axon-onnx-"))
            user_model.write_artifacts([model], written, serving_options or ServingOptions())
        dataset = {
            "name": f"user model {args.onnx}",
            "payload_rows": f"--input-data {args.input_data}" if rows is not None else "generated",
        }
        notices = [] if rows is not None else [inputs.GENERATED_NOTICE.format(seed=seed, high=inputs.GENERATED_INT_HIGH)]
        return ModelChoice(model.name, feed, model.path, dataset, written, model.signature.batched, notices, written)
    name = served_name(args.model or DEFAULT_MODEL)
    reference = artifacts / "models" / name / "model.onnx" if artifacts else None
    trained = reference is not None and reference.is_file()
    if args.input_data is not None:
        if not Path(args.input_data).is_file():
            raise AxonError(f"--input-data {args.input_data}: no such file")
        # Checked against the signature once it is read (from the server), before the load.
        feed = Feed(shapes=shapes, seed=seed, input_data=args.input_data)
        return ModelChoice(
            name,
            feed,
            reference if trained else None,
            {"name": "given", "payload_rows": f"--input-data {args.input_data}"},
            artifacts,
        )
    if trained or name.startswith(MODEL_PREFIX):  # axon's own: its rows (a folder without them is said as such)
        feed, dataset = trained_feed(artifacts, name, seed)
        notices = [dataset["notice"]] if dataset.get("notice") else []
        return ModelChoice(
            name, replace(feed, shapes=shapes), reference if trained else None, dataset, artifacts, notices=notices
        )
    # Any other served model: inputs generated from the signature the server reports.
    notice = inputs.GENERATED_NOTICE.format(seed=seed, high=inputs.GENERATED_INT_HIGH)
    return ModelChoice(
        name,
        Feed(shapes=shapes, seed=seed),
        None,
        {"name": "generated", "payload_rows": "generated"},
        artifacts,
        notices=[notice],
    )
