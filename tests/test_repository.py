"""config.pbtxt from one source of truth, parsed as Triton model configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from axon.errors import AxonError
from axon.offline import repository
from axon.offline.repository import ServingOptions, config_text, parse_config

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("particle_classifier_v1", "particle_classifier_v2")


@pytest.mark.parametrize("target", repository.TARGETS)
def test_batching_on(target):
    cfg = parse_config(config_text("m", target, "on"))
    assert cfg.max_batch_size == 256
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert list(cfg.dynamic_batching.preferred_batch_size) == [64, 128, 256]
    assert cfg.input[0].name == "input" and cfg.input[0].data_type == mc.TYPE_FP32 and list(cfg.input[0].dims) == [28]
    assert cfg.output[0].name == "output" and list(cfg.output[0].dims) == [1]


@pytest.mark.parametrize("target", repository.TARGETS)
def test_batching_off(target):
    cfg = parse_config(config_text("m", target, "off"))
    assert cfg.max_batch_size == 1
    assert not cfg.HasField("dynamic_batching")


def test_targets():
    gpu = parse_config(config_text("m", "gpu", "on"))
    assert gpu.backend == "onnxruntime" and gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    emb = parse_config(config_text("m", "embedded", "on"))
    assert emb.backend == "python" and emb.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert emb.parameters["engine"].string_value == "onnxruntime"


def test_every_knob_is_a_parameter():
    opts = ServingOptions(
        max_batch_size=128, max_queue_delay_us=0, preferred_batch_sizes=(32, 64, 256), instances=2, engine="torch", device="cuda"
    )
    cfg = parse_config(config_text("m", "embedded", "on", opts))
    assert cfg.max_batch_size == 128 and cfg.dynamic_batching.max_queue_delay_microseconds == 0
    assert list(cfg.dynamic_batching.preferred_batch_size) == [32, 64]  # 256 > max_batch_size is dropped
    assert cfg.instance_group[0].count == 2
    assert cfg.parameters["engine"].string_value == "torch" and cfg.parameters["device"].string_value == "cuda"


def test_bad_target_or_mode():
    with pytest.raises(AxonError, match="target"):
        config_text("m", "tpu", "on")
    with pytest.raises(AxonError, match="batching"):
        config_text("m", "gpu", "maybe")


def test_written_repositories(artifacts):
    for target in repository.TARGETS:
        for mode in repository.BATCHING_MODES:
            root = artifacts / "repositories" / target / f"batching_{mode}"
            for name in MODELS:
                cfg = parse_config((root / name / "config.pbtxt").read_text())
                assert cfg.name == name
                assert (root / name / "1" / "model.onnx").is_file()
                assert (root / name / "1" / "model.py").is_file() == (target == "embedded")


def test_committed_model_repository_is_generated():
    """The committed GPU configs are exactly what repository.py writes: one source of truth."""
    for mode in repository.BATCHING_MODES:
        for name in MODELS:
            committed = (ROOT / "model_repository" / f"batching_{mode}" / name / "config.pbtxt").read_text()
            assert committed == config_text(name, "gpu", mode)
