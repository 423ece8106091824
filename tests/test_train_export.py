"""Training determinism and quality; ONNX export and its validation."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from axon.errors import AxonError
from axon.offline import data, export
from axon.offline.model import ARCHITECTURES, MLP, model_name
from axon.offline.train import TrainConfig, train


@pytest.fixture(scope="module")
def small_splits():
    return data.split(data.synthetic(3000, seed=9), seed=9)


def _weights(trained):
    return [p.detach().clone() for p in trained.served.parameters()]


def test_architectures():
    # v1 and v2 exactly as the seed has them; v3 is the optional large model of the direct-vs-service axis.
    assert ARCHITECTURES == {"v1": (64, 32), "v2": (128, 128, 64), "v3": (512, 512, 256)}
    shapes = [tuple(m.weight.shape) for m in MLP(ARCHITECTURES["v2"]).modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(128, 28), (128, 128), (64, 128), (1, 64)]
    assert model_name("v1") == "particle_classifier_v1"


def test_training_is_deterministic(small_splits):
    config = TrainConfig(hidden=(16, 8), epochs=2, seed=3)
    a, b = train(small_splits, config), train(small_splits, config)
    for wa, wb in zip(_weights(a), _weights(b)):
        assert torch.equal(wa, wb)
    c = train(small_splits, TrainConfig(hidden=(16, 8), epochs=2, seed=4))
    assert not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c)))
    assert set(a.metrics["val"]) == {"auc", "accuracy"} and set(a.metrics["test"]) == {"auc", "accuracy"}


@pytest.mark.slow
def test_v1_on_100k_synthetic_rows_is_learnable_not_trivial():
    splits = data.split(data.synthetic(100_000, seed=0), seed=0)
    trained = train(splits, TrainConfig(hidden=ARCHITECTURES["v1"], epochs=4, seed=0))
    assert 0.70 <= trained.metrics["val"]["auc"] <= 0.95


def test_export_is_self_contained_and_matches_torch(tmp_path, small_splits):
    trained = train(small_splits, TrainConfig(hidden=(16, 8), epochs=1))
    path = export.export_onnx(trained.served, tmp_path / "m.onnx")
    report = export.validate(trained.served, path, small_splits.val.features)
    assert report["opset"] == 17 and report["max_abs_diff"] <= 1e-5
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    # Raw features in, probability out: the scaler and the sigmoid are inside the graph.
    sess = export.session(path)
    raw = small_splits.val.features[:300]
    (prob,) = sess.run(["output"], {"input": raw})
    assert prob.shape == (300, 1) and (prob >= 0).all() and (prob <= 1).all()
    ops = {n.op_type for n in proto.graph.node}
    assert "Sigmoid" in ops and "Sub" in ops


def test_validate_rejects_a_graph_that_differs_from_torch(tmp_path, small_splits):
    a = train(small_splits, TrainConfig(hidden=(16, 8), epochs=1, seed=1))
    b = train(small_splits, TrainConfig(hidden=(16, 8), epochs=1, seed=2))
    path = export.export_onnx(a.served, tmp_path / "a.onnx")
    with pytest.raises(AxonError, match="differs from torch"):
        export.validate(b.served, path, small_splits.val.features)


def test_validate_rejects_a_fixed_batch(tmp_path, small_splits):
    trained = train(small_splits, TrainConfig(hidden=(8,), epochs=1))
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(
        trained.served,
        (torch.zeros(1, 28),),
        str(path),
        input_names=["input"],
        output_names=["output"],
        opset_version=17,
        dynamo=False,
    )
    with pytest.raises(AxonError, match="dynamic batch"):
        export.validate(trained.served, path, small_splits.val.features)


def test_pipeline_records_dataset_and_metrics(artifacts):
    metrics = json.loads((artifacts / "models" / "particle_classifier_v1" / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "synthetic" and metrics["dataset"]["rows"] == 12_000
    assert metrics["architecture"] == [28, 64, 32, 1] and metrics["parameters"] == 28 * 64 + 64 + 64 * 32 + 32 + 33
    assert 0.5 < metrics["val"]["auc"] <= 1 and 0 <= metrics["test"]["accuracy"] <= 1
    assert metrics["export"]["batches_checked"] == [1, 7, 256]
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert manifest["dataset"]["seed"] == 1 and set(manifest["models"]) == {"particle_classifier_v1", "particle_classifier_v2"}
    with np.load(artifacts / "validation_rows.npz") as rows:
        assert rows["features"].shape[1] == 28
