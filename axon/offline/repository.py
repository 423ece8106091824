"""Triton model repositories: one config source of truth for every target and batching mode.

Layout written by :func:`write_all`::

    <root>/<target>/batching_<on|off>/<model>/config.pbtxt
    <root>/<target>/batching_<on|off>/<model>/1/model.onnx   (+ 1/model.py for embedded)

``gpu`` is what the Triton container runs (onnxruntime backend, KIND_GPU); ``embedded`` is what
the CPU-only tritonserver from the nvidia-pytriton wheel runs (python backend + onnxruntime).
Configs are built as ``ModelConfig`` protobufs and printed with text_format, so each one parses.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from axon.errors import AxonError
from axon.offline.data import N_FEATURES
from axon.offline.export import INPUT_NAME, OUTPUT_NAME
from axon.records import atomic
from axon.workload.signature import Signature, Tensor, from_onnx

TARGETS = ("embedded", "gpu")
BATCHING_MODES = ("on", "off")
MODEL_FILE = "model.onnx"
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_model.py")


@dataclass(frozen=True)
class ServingOptions:
    """Every knob of the served configuration; the defaults are the study's settings."""

    max_batch_size: int = 256
    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = (64, 128, 256)
    instances: int = 1
    # The dynamic batcher's queue bound and policy (batching on). 0 and 0, the seed's: no bound,
    # no timeout, so overload becomes queued requests, i.e. server memory. With a bound, Triton
    # rejects a request arriving to a full queue at once ("Exceeds maximum queue size"), and
    # with a timeout, one that waited longer than that: overload becomes fast rejections.
    max_queue_size: int = 0
    queue_timeout_us: int = 0
    # Only for the embedded (python backend) target:
    engine: str = "onnxruntime"  # or "torch"
    device: str = "cpu"  # or "cuda"
    threads: int = 1  # onnxruntime intra-op threads per instance


def batching_dir(batching: str) -> str:
    if batching not in BATCHING_MODES:
        raise AxonError(f"batching must be one of {BATCHING_MODES}, got {batching!r}")
    return f"batching_{batching}"


# The trained MLPs' signature, for a config written before (or without) their ONNX file.
MLP_SIGNATURE = Signature((Tensor(INPUT_NAME, "FP32", (N_FEATURES,)),), (Tensor(OUTPUT_NAME, "FP32", (1,)),), 256, "onnx")


def model_config(
    name: str, target: str, batching: str, options: ServingOptions = ServingOptions(), signature: Signature = MLP_SIGNATURE
) -> mc.ModelConfig:
    """The ModelConfig for one model, target and batching mode: its inputs and outputs from ``signature``.

    A model without a batch axis (``signature.max_batch_size == 0``) is served as it is in both
    batching folders: Triton cannot batch it, so neither mode's knobs apply.
    """
    if target not in TARGETS:
        raise AxonError(f"target must be one of {TARGETS}, got {target!r}")
    batching_dir(batching)
    config = mc.ModelConfig(name=name)
    if target == "gpu":
        config.backend = "onnxruntime"
        config.default_model_filename = MODEL_FILE
    else:
        config.backend = "python"
    for tensor in signature.inputs:
        config.input.add(name=tensor.name, data_type=mc.DataType.Value("TYPE_" + tensor.datatype), dims=list(tensor.shape))
    for tensor in signature.outputs:
        config.output.add(name=tensor.name, data_type=mc.DataType.Value("TYPE_" + tensor.datatype), dims=list(tensor.shape))
    if not signature.batched:
        batching = "off"  # nothing to batch: max_batch_size 0, no dynamic batcher
    elif batching == "off":
        # One request per execution: Triton forms no batches.
        config.max_batch_size = 1
    kind = mc.ModelInstanceGroup.KIND_GPU if target == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    group = config.instance_group.add(kind=kind)
    preferred = tuple(size for size in options.preferred_batch_sizes if size <= options.max_batch_size)
    apply_serving(config, replace(options, preferred_batch_sizes=preferred), batching)
    if not signature.batched:
        config.max_batch_size = 0
    if target == "gpu":
        group.gpus.append(0)
    else:
        for key, value in (("engine", options.engine), ("device", options.device), ("threads", str(options.threads))):
            config.parameters[key].string_value = value
    return config


def apply_serving(config: mc.ModelConfig, options: ServingOptions, batching: str = "on") -> mc.ModelConfig:
    """Set the tuned knobs of ``config`` in place (and return it): instances, and with batching on,
    max batch size, queue delay, preferred sizes and the queue policy (bound, timeout, reject).

    Exactly what ``options`` says, unfiltered: ``axon tune`` edits a served config with this and
    lets Triton judge it (a preferred size above the max batch size is Triton's to refuse), and
    :func:`model_config` builds every repository's config through it, so a tuned winner's
    config.pbtxt is the measured candidate's.
    """
    batching_dir(batching)
    if batching == "on":
        config.max_batch_size = options.max_batch_size
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.extend(options.preferred_batch_sizes)
        set_queue_policy(config, options.max_queue_size, options.queue_timeout_us)
    if not config.instance_group:
        config.instance_group.add()
    config.instance_group[0].count = options.instances
    return config


def set_queue_policy(config: mc.ModelConfig, max_queue_size: int, timeout_us: int) -> mc.ModelConfig:
    """The dynamic batcher's default queue policy: a bound and a timeout, both rejecting; none when both are 0."""
    config.dynamic_batching.ClearField("default_queue_policy")
    if max_queue_size or timeout_us:
        policy = config.dynamic_batching.default_queue_policy
        policy.max_queue_size = max_queue_size
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = timeout_us
        policy.allow_timeout_override = False  # the server's policy, whatever a client asks
    return config


def with_queue_policy(source: Path, into: Path, max_queue_size: int, timeout_us: int) -> Path:
    """A copy of the repository ``source`` at ``into`` whose batching models carry the queue policy
    (``axon serve --max-queue-size``: the artifacts on disk stay as trained)."""
    try:
        shutil.copytree(source, into)
        for config_file in sorted(into.glob("*/config.pbtxt")):
            config = parse_config(config_file.read_text())
            if config.HasField("dynamic_batching"):
                atomic.write_bytes(
                    config_file, text_format.MessageToString(set_queue_policy(config, max_queue_size, timeout_us)).encode()
                )
    except OSError as exc:
        raise AxonError(f"cannot copy the repository {source} to {into}: {exc.strerror or exc}") from None
    return into


def config_text(
    name: str, target: str, batching: str, options: ServingOptions = ServingOptions(), signature: Signature = MLP_SIGNATURE
) -> str:
    return text_format.MessageToString(model_config(name, target, batching, options, signature))


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text as Triton does (text-format ModelConfig)."""
    return text_format.Parse(text, mc.ModelConfig())


def write_repository(
    root: Path,
    target: str,
    batching: str,
    models: Mapping[str, Path | None],
    options: ServingOptions = ServingOptions(),
) -> Path:
    """Write one repository at ``root``. ``models`` maps model name -> ONNX file (None: config only)."""
    try:
        for name, onnx_path in models.items():
            model_dir = root / name
            signature = from_onnx(onnx_path, options.max_batch_size) if onnx_path is not None else MLP_SIGNATURE
            atomic.write_bytes(model_dir / "config.pbtxt", config_text(name, target, batching, options, signature).encode())
            if onnx_path is not None:
                version = model_dir / "1"
                version.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(onnx_path, version / MODEL_FILE)
                if target == "embedded":
                    shutil.copyfile(PYTHON_MODEL_SOURCE, version / "model.py")
    except OSError as exc:
        raise AxonError(f"cannot write model repository {root}: {exc.strerror or exc}") from None
    return root


def write_all(
    root: Path, models: Mapping[str, Path | None], options: ServingOptions = ServingOptions()
) -> dict[str, dict[str, Path]]:
    """Write every target x batching repository under ``root``; returns target -> batching -> path."""
    out: dict[str, dict[str, Path]] = {}
    for target in TARGETS:
        for batching in BATCHING_MODES:
            path = root / target / batching_dir(batching)
            out.setdefault(target, {})[batching] = write_repository(path, target, batching, models, options)
    return out
