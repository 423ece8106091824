"""Any model: a signature read from an ONNX graph or a served model, inputs built from it, every
output checked against onnxruntime, through both engines, on the real embedded Triton."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from axon.errors import AxonError
from axon.workload import inputs, requests
from axon.workload.feed import Feed, settle
from axon.workload.signature import from_onnx, parse_shape
from tests import onnx_models
from tests.helpers import assert_clean_error, run_axon

SHAPES = {"points": (8, 3), "mask": (8,)}
SHAPE_ARGS = ["--shape", "points:8,3", "--shape", "mask:8"]
QUICK = ["--duration", "1", "--warmup", "0.3", "--concurrency", "4"]
pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return {"tagger": onnx_models.tagger(root / "tagger.onnx"), "fixed": onnx_models.fixed(root / "fixed.onnx")}


# --------------------------------------------------------------------------- no server needed


def test_signature_of_a_graph_with_three_datatypes_an_open_dimension_and_two_outputs(models):
    s = from_onnx(models["tagger"])
    assert s.batched and s.max_batch_size == 256 and s.source == "onnx"
    assert [(t.name, t.datatype, t.shape) for t in s.inputs] == [
        ("points", "FP32", (-1, 3)),
        ("mask", "BOOL", (-1,)),
        ("ids", "INT64", (4,)),
    ]
    assert [(t.name, t.datatype) for t in s.outputs] == [("score", "FP32"), ("count", "INT64")]
    assert s.request_shapes(2, SHAPES) == {"points": (2, 8, 3), "mask": (2, 8), "ids": (2, 4)}
    fixed = from_onnx(models["fixed"])
    assert not fixed.batched and fixed.max_batch_size == 0 and fixed.request_shapes(1) == {"x": (4, 3)}


@pytest.mark.parametrize(
    ("rows", "given", "message"),
    [
        (
            1,
            {"mask": (8,)},
            "input 'points' has an open dimension [-1, 3] (batch axis excluded): give its size with --shape points:",
        ),
        (1, {**SHAPES, "pts": (8, 3)}, "--shape pts: model 'm' has no such input (its inputs: points, mask, ids)"),
        (1, {**SHAPES, "points": (8,)}, "--shape points: 1 dimension(s) given, but the input has 2"),
        (1, {**SHAPES, "points": (8, 4)}, "--shape points: [8, 4] does not fit the input's fixed shape [-1, 3]"),
        (300, SHAPES, "--rows-per-request 300 exceeds model 'm''s max_batch_size 256"),
    ],
)
def test_shapes_are_settled_or_refused_naming_the_input(models, rows, given, message):
    with pytest.raises(AxonError) as err:
        from_onnx(models["tagger"]).request_shapes(rows, given, "model 'm'")
    assert message in str(err.value)


def test_shape_option_parses_or_says_why():
    assert parse_shape("points:16,3") == ("points", (16, 3))
    for bad, said in (("points", "expected NAME:d1,d2"), ("points:x", "whole numbers"), ("points:0,3", "> 0")):
        with pytest.raises(AxonError, match=said):
            parse_shape(bad)


def test_generated_inputs_are_seeded_and_of_each_datatype(models):
    s = from_onnx(models["tagger"])
    shapes = s.request_shapes(3, SHAPES)
    a, b, other = inputs.generated(s, shapes, 7)(0), inputs.generated(s, shapes, 7)(0), inputs.generated(s, shapes, 8)(0)
    assert {k: (v.dtype, v.shape) for k, v in a.items()} == {
        "points": (np.float32, (3, 8, 3)),
        "mask": (np.bool_, (3, 8)),
        "ids": (np.int64, (3, 4)),
    }
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["points"], other["points"])
    assert a["ids"].min() >= 0 and a["ids"].max() < inputs.GENERATED_INT_HIGH


def test_input_data_is_checked_before_any_load(models, tmp_path):
    s = from_onnx(models["tagger"])
    shapes = s.request_shapes(2, SHAPES)
    good = {"points": np.zeros((5, 8, 3), np.float32), "mask": np.ones((5, 8), bool), "ids": np.zeros((5, 4), np.int64)}
    path = tmp_path / "in.npz"
    cases = [
        ({k: v for k, v in good.items() if k != "ids"}, "no array for input 'ids'"),
        ({**good, "ids": good["ids"].astype(np.int32)}, "input 'ids' is int32, the model takes INT64"),
        ({**good, "points": np.zeros((5, 7, 3), np.float32)}, "input 'points' has shape [5, 7, 3]; expected [rows, 8, 3]"),
        ({**good, "mask": np.ones((1, 8), bool)}, "input 'mask' has 1 row(s), fewer than one request needs (2)"),
    ]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(AxonError) as err:
            inputs.load_npz(path, s, shapes)
        assert message in str(err.value)
    np.savez(path, **good)
    rows = inputs.load_npz(path, s, shapes)
    source, available = inputs.per_request(s, rows, shapes)
    assert available == 2 and source(1)["points"].shape == (2, 8, 3)


def test_requests_carry_every_input_and_answers_are_checked_per_datatype(models):
    s = from_onnx(models["tagger"])
    settled = settle(Feed(shapes=SHAPES, signature=s), "tagger", None, 2, 3, models["tagger"])
    assert len(settled.payloads.bodies) == 3 and settled.record["bytes_per_request"] == 2 * (8 * 3 * 4 + 8 + 4 * 8)
    expected = settled.expected[0]
    assert set(expected) == {"score", "count"} and expected["count"].dtype == np.int64
    assert requests.matches({k: v.copy() for k, v in expected.items()}, expected)
    near = {"score": expected["score"] * (1 + 1e-6), "count": expected["count"]}
    assert requests.matches(near, expected)  # FP32 within its tolerance
    assert not requests.matches({**expected, "count": expected["count"] + 1}, expected)  # integers are exact
    assert not requests.matches({"score": expected["score"]}, expected)  # every output must be there


def test_the_payload_pool_is_bounded_in_bytes_and_says_so(models):
    s = from_onnx(models["tagger"])
    settled = settle(Feed(shapes=SHAPES, signature=s), "tagger", None, 1, 1024, None, byte_limit=1000)
    bodies = settled.payloads.bodies
    # The bound holds the serialised bodies (136 bytes of tensors each, plus their framing).
    assert len(bodies) == 1000 // len(bodies[0]) and sum(map(len, bodies)) <= 1000 < sum(map(len, bodies)) + len(bodies[0])
    assert settled.payloads.limited_by_bytes and len(bodies[0]) > 136
    assert "payload pool bound limits them" in settled.notice and settled.expected is None
    # A server run sends bytes only: the input arrays are not kept beside them; an in-process run keeps them.
    assert settled.payloads.requests == []
    kept = settle(Feed(shapes=SHAPES, signature=s), "tagger", None, 1, 4, models["tagger"], keep_tensors=True)
    assert len(kept.payloads.requests) == len(kept.expected) == 4 and set(kept.payloads.requests[0]) == {"points", "mask", "ids"}


def test_inputs_the_model_refuses_point_to_input_data(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    # A table lookup: generated indices in [0, 16) overrun a table of 2 rows.
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "index"], ["out"])],
        "lookup",
        inputs=[helper.make_tensor_value_info("index", TensorProto.INT64, ["batch", 1])],
        outputs=[helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1, 2])],
        initializer=[numpy_helper.from_array(np.eye(2, dtype=np.float32), "table")],
    )
    path = onnx_models._save(graph, tmp_path / "lookup.onnx")
    s = from_onnx(path)
    with pytest.raises(AxonError, match="refused generated inputs .* --input-data FILE.npz"):
        settle(Feed(signature=s), "lookup", None, 4, 8, path)


def test_bad_onnx_options_are_one_line_before_any_server(models, tmp_path):
    (tmp_path / "notes.onnx").write_text("not a graph")
    assert_clean_error(run_axon("bench", "--onnx", str(tmp_path / "missing.onnx")), "--onnx", "no such file")
    assert_clean_error(run_axon("bench", "--onnx", str(tmp_path / "notes.onnx")), "not a model onnxruntime can load")
    assert_clean_error(
        run_axon("bench", "--onnx", str(models["tagger"])), "input 'points' has an open dimension", "--shape points:"
    )
    assert_clean_error(run_axon("bench", "--onnx", str(models["fixed"]), "--batching", "on"), "model 'fixed' has no batch axis")
    assert_clean_error(
        run_axon("bench", "--onnx", str(models["fixed"]), "--rows-per-request", "2"), "--rows-per-request must be 1"
    )
    assert_clean_error(
        run_axon("tune", "--onnx", str(models["fixed"]), "--apply"), "--apply writes the trained models' repositories"
    )
    assert_clean_error(
        run_axon("tune", "--onnx", str(models["fixed"]), "--objective", "capacity"),
        "--objective capacity measures axon's own models",
    )
    assert_clean_error(run_axon("direct", "--onnx", str(models["tagger"])), "input 'points' has an open dimension")


# --------------------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    """One embedded server serving both user models from the repository axon writes for them."""
    from axon.offline import user_model
    from axon.serving.backends import embedded_repository
    from axon.serving.embedded import EmbeddedServer

    root = user_model.write_artifacts(user_model.load([models["tagger"], models["fixed"]]), tmp_path_factory.mktemp("repo"))
    with EmbeddedServer(embedded_repository(root, "on"), models=["tagger", "fixed"]) as server:
        yield server


@pytest.mark.parametrize("engine", ["python", "native"])
def test_a_several_input_model_through_each_engine_every_output_checked(models, served, engine, tmp_path):
    from axon.case import Target, run_case
    from axon.engines.loadgen import LoadSpec

    if engine == "native" and shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    s = from_onnx(models["tagger"])
    rng = np.random.default_rng(3)
    rows = {
        "points": rng.standard_normal((64, 8, 3)).astype(np.float32),
        "mask": rng.random((64, 8)) < 0.7,
        "ids": rng.integers(0, 9, (64, 4)),
    }
    spec = LoadSpec(
        "tagger", concurrency=4, duration_s=1.0, warmup_s=0.3, timeout_s=5.0, engine=engine, sample_every=1, rows_per_request=2
    )
    record = run_case(
        spec, Target.of(served, "on"), Feed(rows=rows, shapes=SHAPES, signature=s), models["tagger"], {"name": "given"}
    )
    assert record["passed"], record["verdicts"]
    assert record["engine"]["name"] == engine and record["correctness"]["enabled"]
    assert record["correctness"]["checked"] > 0 and record["correctness"]["mismatches"] == 0
    assert record["signature"]["inputs"][2] == {"name": "ids", "datatype": "INT64", "shape": [2, 4]}
    assert record["signature"]["bytes_per_response"] == 2 * (4 + 8)


def test_a_model_without_a_batch_axis_is_served_and_checked(models, served):
    from axon.case import Target, run_case
    from axon.engines.loadgen import LoadSpec

    spec = LoadSpec("fixed", concurrency=2, duration_s=1.0, warmup_s=0.3, timeout_s=5.0, engine="python", sample_every=1)
    record = run_case(
        spec, Target.of(served, "off"), Feed(signature=from_onnx(models["fixed"])), models["fixed"], {"name": "generated"}
    )
    assert record["passed"] and record["correctness"]["checked"] > 0 and record["correctness"]["mismatches"] == 0
    assert record["signature"]["max_batch_size"] == 0 and record["signature"]["inputs"][0]["shape"] == [4, 3]


def test_a_served_model_without_a_local_file_runs_from_its_served_signature_unchecked(served, tmp_path):
    ep = served.endpoints
    out = tmp_path / "r.json"
    done = run_axon(
        "bench",
        "--url",
        ep.grpc,
        "--metrics-url",
        ep.metrics,
        "--model",
        "tagger",
        *SHAPE_ARGS,
        *QUICK,
        "--engine",
        "python",
        "--output",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "inputs generated from the signature" in done.stderr and "unchecked" in done.stdout
    record = json.loads(out.read_text())["runs"][0]
    assert record["signature"]["source"] == "served" and record["correctness"]["enabled"] is False
    assert [i["datatype"] for i in record["signature"]["inputs"]] == ["FP32", "BOOL", "INT64"]
    missing = run_axon("bench", "--url", ep.grpc, "--model", "nope", *QUICK, "--engine", "python", cwd=tmp_path)
    assert_clean_error(missing, "model 'nope' is not served", "it serves: fixed, tagger")


def test_bench_onnx_serves_the_users_file_and_checks_it(models, tmp_path):
    out = tmp_path / "r.json"
    done = run_axon("bench", "--onnx", str(models["fixed"]), *QUICK, "--engine", "python", "--output", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())["runs"][0]
    assert record["model"] == "fixed" and record["batching"] == "off" and record["passed"]
    assert record["correctness"]["enabled"] and record["correctness"]["mismatches"] == 0
    assert not list(tmp_path.glob("axon-onnx-*"))  # nothing left beside the results


def test_pytest_face_adds_the_users_model_to_the_matrix_and_its_budgets(pytester, artifacts, models):
    pytester.makepyfile(
        """
import pytest

@pytest.mark.axon_models
def test_case(axon_bench, model):
    axon_bench(model, "on", concurrency=2)
"""
    )
    pytester.makefile(".toml", slo='[[slo]]\nname = "tagger-budget"\nmodel = "tagger"\np50_ms = 0.001\n')
    args = [
        "--axon-artifacts",
        str(artifacts),
        "--axon-duration",
        "1",
        "--axon-warmup",
        "0.2",
        "-p",
        "no:cacheprovider",
        "--axon-engine",
        "python",
    ]
    args += [
        "--axon-onnx",
        str(models["tagger"]),
        "--axon-shape",
        "points:8,3",
        "--axon-shape",
        "mask:8",
        "--axon-slo-file",
        "slo.toml",
    ]
    collected = pytester.runpytest_subprocess(*args, "--collect-only", "-q")
    assert {"test_case[v1]", "test_case[v2]", "test_case[tagger]"} <= {line.split("::")[-1] for line in collected.stdout.lines}
    result = pytester.runpytest_subprocess(*args, "-k", "tagger")
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "[tagger-budget]" in output and "p50" in output
    missing = pytester.runpytest_subprocess("--axon-onnx", str(models["tagger"]), "-p", "no:cacheprovider")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR and "input 'points' has an open dimension" in missing.stderr.str()


def test_direct_runs_the_users_model_in_process(models, tmp_path):
    out = tmp_path / "d.json"
    done = run_axon(
        "direct",
        "--onnx",
        str(models["tagger"]),
        *SHAPE_ARGS,
        "--rows-per-request",
        "1,4",
        "--repeat",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["load"]["rows_per_request"] for r in runs] == [1, 4] and all(r["latency_ms"]["count"] > 0 for r in runs)
    assert runs[1]["signature"]["inputs"][0] == {"name": "points", "datatype": "FP32", "shape": [4, 8, 3]}


def test_the_point_cloud_tagger_exports_three_inputs_with_a_batch_axis(tmp_path):
    from axon.offline import export, pointcloud

    jets = pointcloud.synthetic_jets(96, seed=1)
    model, history = pointcloud.train(jets.take(slice(0, 64)), epochs=1)
    assert len(history) == 1 and pointcloud.parameter_count(model) > 300_000
    path = pointcloud.export_onnx(model, tmp_path / "pn.onnx", export.OPSET)
    s = from_onnx(path)
    assert s.batched and [(t.name, t.datatype, t.shape) for t in s.inputs] == [
        ("points", "FP32", (pointcloud.PARTICLES, 2)),
        ("features", "FP32", (pointcloud.PARTICLES, 4)),
        ("mask", "FP32", (pointcloud.PARTICLES, 1)),
    ]
    held_out = jets.take(slice(64, 96))
    got = export.session(path).run(None, held_out.inputs())[0].ravel()
    assert np.max(np.abs(got - pointcloud.predict(model, held_out))) < 1e-4
    # Padded particles change nothing: the mask keeps them out of every neighbourhood and the pool.
    noisy = held_out.inputs()
    pad = noisy["mask"][..., 0] == 0
    noisy["features"] = noisy["features"].copy()
    noisy["features"][pad] = 99.0
    again = export.session(path).run(None, noisy)[0].ravel()
    assert np.max(np.abs(again - got)) < 1e-4
