"""A user's own ONNX model, served the way axon serves its trained ones.

``--onnx PATH`` on a face becomes a :class:`UserModel`: its signature read from the graph,
its served name (the file's stem, or ``--model``), and a repository written for it in the
same layout as `axon train`'s artifacts (``repositories/<target>/batching_<mode>/<name>``),
every target and batching mode, with the same knobs. The embedded server and the container
then serve it exactly as they serve v1 and v2, and onnxruntime on the same file is the
reference every answer is checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from axon.errors import AxonError
from axon.offline.repository import ServingOptions, write_all
from axon.workload.signature import Signature, from_onnx, served_name_of


@dataclass(frozen=True)
class UserModel:
    path: Path
    name: str
    signature: Signature


def load(
    paths: Sequence[Path], names: Sequence[str] = (), max_batch_size: int = ServingOptions.max_batch_size
) -> list[UserModel]:
    """Each ``--onnx`` file read now (a bad path is one line, before any server), with its served name."""
    models = []
    for i, path in enumerate(paths):
        name = names[i] if i < len(names) else served_name_of(path)
        models.append(UserModel(Path(path), name, from_onnx(Path(path), max_batch_size)))
    seen: dict[str, Path] = {}
    for m in models:
        if m.name in seen:
            raise AxonError(f"--onnx {m.path} and {seen[m.name]} would both be served as {m.name!r}: rename one file")
        seen[m.name] = m.path
    return models


def write_artifacts(models: Sequence[UserModel], root: Path, options: ServingOptions | None = None) -> Path:
    """Repositories for ``models`` under ``root`` in `axon train`'s layout; returns ``root``.

    ``root`` then stands where an artifacts folder would for make_server, the docker backend
    included (its CPU image mounts the embedded repository, its GPU image the gpu one, whose
    onnxruntime backend serves the user's file natively on KIND_GPU).
    """
    write_all(root / "repositories", {m.name: m.path for m in models}, options or ServingOptions())
    return root


def refuse_batching_modes(name: str, batched: bool, asked: str | None, ab: bool) -> None:
    """A model without a batch axis cannot be batched: a batching mode asked for it is refused in one line."""
    if batched:
        return
    if ab or asked is not None:
        option = "--ab" if ab else f"--batching {asked}"
        raise AxonError(
            f"{option}: model {name!r} has no batch axis (its inputs' first dimension is fixed), so Triton cannot batch it; leave batching out"
        )


def with_trained(root: Path, artifacts: Path, trained: Sequence[str]) -> Path:
    """Copy the trained models' repositories from ``artifacts`` into ``root`` beside the user's; returns ``root``."""
    import shutil

    from axon.offline.repository import BATCHING_MODES, TARGETS, batching_dir

    for name in trained:
        for target in TARGETS:
            for mode in BATCHING_MODES:
                source = artifacts / "repositories" / target / batching_dir(mode) / name
                if not source.is_dir():
                    raise AxonError(f"model repository not found: {source} (run `axon train` first, with --models naming it)")
                shutil.copytree(source, root / "repositories" / target / batching_dir(mode) / name)
    return root
