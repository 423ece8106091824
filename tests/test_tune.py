"""axon tune: the space, the search, the "beyond noise" rule, and the real CLI on the real embedded Triton."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from axon.errors import AxonError
from axon.offline.repository import ServingOptions, config_text, parse_config
from axon.study.tune import report, search, space, verdict
from axon.study.tune.control import LoadResult
from tests.helpers import assert_clean_error, run_axon

MODEL = "particle_classifier_v1"
BUDGET = verdict.Budget(p50_ms=7.0, p99_ms=25.0)
# Short windows: these tests check behaviour, not numbers.
QUICK = ("--repeat", "2", "--duration", "1", "--warmup", "0.5", "--concurrency", "16")


def _run(cid: str, rnd: int, rps: float, p50: float = 2.0, p99: float = 10.0, c: int = 64, stage: int = 0) -> dict:
    return {"tune": {"candidate": cid, "round": rnd, "stage": stage}, "load": {"concurrency": c}, "throughput_rps": rps, "latency_ms": {"p50": p50, "p99": p99}}


def _runs(cid: str, values: list[float], **kw) -> list[dict]:
    return [_run(cid, i, v, **kw) for i, v in enumerate(values)]


# --------------------------------------------------------------------------- the "beyond noise" rule


# FIELD-NOTES, "Config probe": h2load at c=64, two interleaved rounds, req/s (recorded 2026-11-29).
PROBE = {
    "seed (1 instance, 100 µs)": [20_600, 16_500],
    "2 instances, 100 µs": [23_000, 23_800],
    "1 instance, 0 µs": [19_300, 26_600],
    "2 instances, 0 µs": [19_100, 27_800],
    "1 instance, 1000 µs": [17_200, 21_100],
}


def test_beyond_noise_on_the_recorded_config_probe():
    default = verdict.operating_point(_runs("seed", PROBE["seed (1 instance, 100 µs)"]), BUDGET)
    judged = {name: verdict.compare(verdict.operating_point(_runs(name, v), BUDGET), default) for name, v in PROBE.items() if not name.startswith("seed")}
    # Only 2 instances at 100 µs lies wholly above the seed's range; 0 µs won round 2 by 61% and
    # lost round 1: a once-per-candidate tuner would have picked it, and it is within noise.
    assert judged["2 instances, 100 µs"].beats and judged["2 instances, 100 µs"].reason == "ranges apart"
    for name in ("1 instance, 0 µs", "2 instances, 0 µs", "1 instance, 1000 µs"):
        assert not judged[name].beats, name
        assert judged[name].reason == "within noise"
    assert judged["1 instance, 0 µs"].change == pytest.approx((19_300 + 26_600) / (20_600 + 16_500) - 1)


def _evaluate(groups: dict[str, list[dict]]) -> list[verdict.Evaluation]:
    candidates = [{"id": cid, "label": cid, "error": None, "loads": []} for cid in groups]
    return verdict.evaluate(candidates, [r for rs in groups.values() for r in rs], BUDGET)


def test_winner_only_beyond_noise_and_within_budget():
    groups = {
        "c0": _runs("c0", [10_000, 10_400, 10_200]),
        "c1": _runs("c1", [11_000, 9_900, 12_000]),  # higher median, overlapping range, no Welch
        "c2": _runs("c2", [20_000, 21_000, 22_000], p99=30.0),  # far faster, but p99 over budget
    }
    evaluations = _evaluate(groups)
    assert verdict.winner(evaluations) is None
    assert [e.cid for e in verdict.rank(evaluations)] == ["c1", "c0", "c2"]  # budget-breakers last
    by_id = {e.cid: e for e in evaluations}
    assert by_id["c2"].comparison.reason == "breaks the budget" and not by_id["c2"].point.in_budget
    assert report.summary(None, by_id["c0"], BUDGET, "throughput") == "No candidate beats the default beyond noise."
    groups["c3"] = _runs("c3", [10_500, 10_600, 10_700])  # overlaps? no: 10,500 > 10,400
    win = verdict.winner(_evaluate(groups))
    assert win is not None and win.cid == "c3" and win.comparison.reason == "ranges apart"


def test_welch_judges_overlapping_ranges():
    default = verdict.operating_point(_runs("a", [100, 101, 102, 103, 104, 111]), BUDGET)
    candidate = verdict.operating_point(_runs("b", [110, 111, 112, 113, 114, 115]), BUDGET)
    assert candidate.throughput.overlaps(default.throughput)
    result = verdict.compare(candidate, default)
    assert result.beats and result.reason.startswith("Welch t on log runs") and result.p_value < 0.01


def test_one_run_is_never_beyond_noise():
    default = verdict.operating_point(_runs("a", [100]), BUDGET)
    candidate = verdict.operating_point(_runs("b", [1_000]), BUDGET)
    assert not verdict.compare(candidate, default).beats


def test_operating_point_is_the_best_concurrency_within_budget():
    runs = _runs("a", [5_000, 5_100], c=16) + _runs("a", [9_000, 9_500], c=64, p50=8.0) + _runs("a", [6_000, 6_100], c=32)
    point = verdict.operating_point(runs, BUDGET)
    assert point.concurrency == 32 and point.in_budget  # c=64 serves more but breaks the p50 budget


def test_capacity_beats_only_where_the_default_fails():
    default = {"max_rate": 2_000.0, "first_fail": 2_500.0}
    assert verdict.compare_capacity({"max_rate": 3_000.0}, default).beats
    assert not verdict.compare_capacity({"max_rate": 2_250.0}, default).beats  # between: within noise
    assert not verdict.compare_capacity({"max_rate": None}, default).beats


# --------------------------------------------------------------------------- space and search (no server)


def test_space_parsing_and_grid():
    values = space.parse({"preferred": ["none", "64/128/256"], "instances": ["1", "2"]})
    assert list(values) == ["instances", "preferred"]  # the coordinate order, whatever the input order
    assert values["preferred"] == ((), (64, 128, 256))
    s = space.build(ServingOptions(), values)
    assert s.grid()[0] == ServingOptions() and s.size == 4  # the seed counted once
    assert space.parse({}) == {k: tuple(v) for k, v in space.DEFAULT_SPACE.items()}


@pytest.mark.parametrize(
    ("given", "batching", "fragment"),
    [
        ({"threads": [1]}, True, "unknown knob(s) 'threads'"),
        ({"instances": []}, True, "empty space"),
        ({"instances": [0]}, True, "out of range"),
        ({"delay_us": [0]}, False, "needs dynamic batching"),
        ({"preferred": "64"}, True, "expected a list"),
        ({"queue_timeout_us": [0, 20000]}, False, "needs dynamic batching"),
        ({"queue_timeout_us": [-1]}, True, "out of range"),
    ],
)
def test_space_refusals(given, batching, fragment):
    with pytest.raises(AxonError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        space.parse(given, batching)


def test_the_queue_timeout_is_a_knob_the_candidate_carries():
    values = space.parse({"queue_timeout_us": ["0", "20000"], "max_queue": ["0"]})
    assert list(values) == ["max_queue", "queue_timeout_us"]
    candidates = space.build(ServingOptions(), values).grid()
    assert [c.queue_timeout_us for c in candidates] == [0, 20000]
    assert space.label(candidates[1]).endswith(", timeout 20000 µs")
    assert space.knobs_of(candidates[1])["queue_timeout_us"] == 20000


def test_seed_only_space_is_empty():
    with pytest.raises(AxonError, match="empty space"):
        space.build(ServingOptions(), space.parse({"instances": [1]}))


class FakeServer:
    """Loads and measures by table: throughput per (instances, concurrency), refuses max_batch 64."""

    def __init__(self, rps):
        self.rps, self.loaded, self.calls = rps, None, []

    def load(self, options: ServingOptions) -> LoadResult:
        self.calls.append(("load", options.instances, options.max_batch_size))
        if options.max_batch_size == 64:
            return LoadResult(False, 0.01, "dynamic batching preferred size must be <= max batch size")
        self.loaded = options
        return LoadResult(True, 0.5)

    def measure(self, options: ServingOptions, c: int, label: str) -> dict:
        assert options == self.loaded  # never measured under a config other than the one loaded
        self.calls.append(("run", options.instances, c))
        rps = self.rps(options, c)
        return {"throughput_rps": rps, "latency_ms": {"p50": 1.0, "p99": 2.0}, "load": {"concurrency": c}}


def test_interleaved_rounds_failed_candidate_and_early_stop():
    fake = FakeServer(lambda o, c: {16: 5_000.0, 64: 5_100.0, 128: 9_000.0}[c] * o.instances)
    s = space.build(ServingOptions(), space.parse({"instances": [1, 2], "max_batch": [64, 256]}))
    tuner = search.Search(s, search.Plan((16, 64, 128), 2, BUDGET), fake.load, fake.measure)
    tuner.run()
    assert tuner.strategy == "brute"
    # Every candidate once per round; the refused ones are tried once and recorded with Triton's message.
    order = [(r["tune"]["round"], r["tune"]["candidate"]) for r in tuner.runs]
    assert order == [(0, "c0"), (0, "c0"), (0, "c3"), (0, "c3"), (1, "c0"), (1, "c0"), (1, "c3"), (1, "c3")]
    failed = [c for c in tuner.candidates if c["error"]]
    assert [c["id"] for c in failed] == ["c1", "c2"] and all(len(c["loads"]) == 1 for c in failed)
    assert "preferred size must be <= max batch size" in failed[0]["error"]
    # 16 -> 64 gains 2% < 5%: the sweep stops there, and c=128 (which would have gained) is never run.
    assert all(c["sweep"] == [16, 64] for c in tuner.candidates if not c["error"])
    assert not any(call == ("run", 1, 128) for call in fake.calls)


def test_coordinate_search_for_large_spaces():
    # Throughput grows with instances; delay does not matter. 3 x 5 = 15 > BRUTE_FORCE_MAX.
    fake = FakeServer(lambda o, c: 4_000.0 * o.instances + o.max_queue_delay_us * 0.0)
    s = space.build(ServingOptions(), space.parse({"instances": [1, 2, 3], "delay_us": [0, 50, 100, 500, 1000]}))
    assert s.size > search.BRUTE_FORCE_MAX
    tuner = search.Search(s, search.Plan((16,), 2, BUDGET), fake.load, fake.measure)
    tuner.run()
    assert tuner.strategy == "coordinate"
    measured = {c["label"] for c in tuner.candidates}
    assert len(measured) < s.size  # not the whole grid
    # Stage 2 varies the delay around the stage-1 incumbent (3 instances), with the default measured again.
    stage2 = {r["tune"]["label"] for r in tuner.runs if r["tune"]["stage"] == 1}
    assert "1 inst, 100 µs, pref 64/128/256, max 256" in stage2
    assert {f"3 inst, {d} µs, pref 64/128/256, max 256" for d in (0, 50, 100, 500, 1000)} <= stage2


def test_apply_writes_the_repository_config(tmp_path):
    artifacts = tmp_path / "artifacts"
    for target in ("embedded", "gpu"):
        (artifacts / "repositories" / target / "batching_on" / MODEL).mkdir(parents=True)
    gpu_repo = tmp_path / "model_repository"
    options = ServingOptions(instances=2, max_queue_delay_us=0)
    written = report.apply_winner(MODEL, "on", options, artifacts, gpu_repo)
    assert len(written) == 2  # the gpu repository lacks the model: nothing created there
    assert written[0].read_text() == config_text(MODEL, "embedded", "on", options)
    assert parse_config(written[1].read_text()).instance_group[0].count == 2
    assert not gpu_repo.exists()


# --------------------------------------------------------------------------- the real CLI, bad input


@pytest.mark.parametrize(
    ("extra", "space_text", "fragment"),
    [
        ((), "threads = [1, 2]\n", "unknown knob(s) 'threads'"),
        ((), "", "empty space"),
        (("--instances", ","), None, "empty space: knob 'instances' has no values"),
        (("--p99-ms", "0"), None, "budget --p99-ms must be > 0"),
        (("--p50-ms", "-1"), None, "budget --p50-ms must be > 0"),
        (("--space", "/nonexistent/space.toml"), None, "cannot read space file"),
        ((), "instances = [1,\n", "is not valid TOML"),
        (("--queue-timeout-us", "0,soon"), None, "queue_timeout_us: expected a whole number, got 'soon'"),
    ],
)
def test_cli_bad_input_is_one_line_before_any_server(tmp_path, extra, space_text, fragment):
    args = ["tune", "--model", "v1", "--artifacts", str(tmp_path / "no-artifacts"), "--out", str(tmp_path / "out"), *extra]
    if space_text is not None:
        (tmp_path / "space.toml").write_text(space_text)
        args += ["--space", str(tmp_path / "space.toml")]
    done = run_axon(*args, timeout=60)
    assert_clean_error(done, fragment)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "repository" not in done.stderr  # refused before any server was looked for


def test_cli_unknown_model_without_url(artifacts, tmp_path):
    done = run_axon("tune", "--model", "v9", "--artifacts", str(artifacts), "--out", str(tmp_path), timeout=60)
    assert_clean_error(done, "not in the repository")


# --------------------------------------------------------------------------- the real CLI on the real server


def _files(root: Path) -> dict[str, str]:
    """Every file's hash, but Python's byte-code cache, which the python backend writes on any server start."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_cli_tune_embedded_tiny_space(artifacts, tmp_path):
    before = _files(artifacts)
    out = tmp_path / "tune"
    done = run_axon("tune", "--model", "v1", "--artifacts", str(artifacts), "--out", str(out), "--instances", "1,2", "--max-batch", "64,256", *QUICK, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _files(artifacts) == before  # without --apply nothing on disk changes
    folder = out / MODEL
    doc = json.loads((folder / report.RECORD_FILE).read_text())
    by_id = {c["id"]: c for c in doc["candidates"]}
    assert by_id["c0"]["default"] and by_id["c0"]["knobs"] == {"instances": 1, "delay_us": 100, "preferred": [64, 128, 256], "max_batch": 256, "max_queue": 0, "queue_timeout_us": 0}  # 0: the seed has no queue policy
    # Max batch 64 under preferred sizes up to 256: Triton refuses it, the search goes on.
    for cid in ("c1", "c2"):
        assert by_id[cid]["knobs"]["max_batch"] == 64
        assert "preferred size must be <= max batch size" in by_id[cid]["error"]
    assert not by_id["c3"]["error"] and by_id["c3"]["knobs"]["instances"] == 2
    # Interleaved rounds: c0, c3, c0, c3; every successful load timed.
    assert [(r["tune"]["round"], r["tune"]["candidate"]) for r in doc["runs"]] == [(0, "c0"), (0, "c3"), (1, "c0"), (1, "c3")]
    assert all(ld["seconds"] >= 0 for c in doc["candidates"] for ld in c["loads"])
    assert len(by_id["c3"]["loads"]) == 2 and all(ld["ok"] for ld in by_id["c3"]["loads"])
    assert all(r["engine"]["name"] == "native" for r in doc["runs"])  # the best engine here (h2load)
    assert doc["restored"]["matches_initial"] is True
    # The table, the verdict, and what is written.
    assert "req/s median [min–max]" in done.stdout and "c3 2 inst, 100 µs" in done.stdout and "failed to load" in done.stdout
    if doc["winner"] is None:
        assert "No candidate beats the default beyond noise." in done.stdout
        assert not (folder / report.WINNER_CONFIG).exists()
    else:
        assert "Winner: c3" in done.stdout
        assert (folder / report.WINNER_CONFIG).read_text() == config_text(MODEL, "embedded", "on", ServingOptions(instances=2))
    markdown = (folder / report.REPORT_FILE).read_text()
    assert markdown.startswith(f"## axon tune: {MODEL}") and report.PLOT_FILE in markdown
    assert (folder / report.PLOT_FILE).stat().st_size > 10_000


@pytest.fixture(scope="module")
def explicit_server(artifacts):
    from axon.serving.embedded import EmbeddedServer

    with EmbeddedServer(artifacts / "repositories" / "embedded" / "batching_on", models=[MODEL]) as server:
        yield server


def test_tune_restores_the_on_disk_config(explicit_server, artifacts, tmp_path):
    import tritonclient.grpc as grpcclient
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2 as mc

    ep = explicit_server.endpoints
    client = grpcclient.InferenceServerClient(ep.grpc)
    on_disk = client.get_model_config(MODEL, as_json=True)["config"]
    # Start from an override (3 instances), which a plain load keeps: Triton's behaviour tune must undo.
    override = json_format.ParseDict(on_disk, mc.ModelConfig())
    override.instance_group[0].count = 3
    client.load_model(MODEL, config=json_format.MessageToJson(override))
    client.load_model(MODEL)
    assert client.get_model_config(MODEL, as_json=True)["config"]["instance_group"][0]["count"] == 3
    out = tmp_path / "tune"
    done = run_axon("tune", "--url", ep.grpc, "--metrics-url", ep.metrics, "--model", "v1", "--artifacts", str(artifacts), "--out", str(out), "--instances", "1,2", *QUICK, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((out / MODEL / report.RECORD_FILE).read_text())
    assert doc["last_candidate_loaded"] != "c0"  # the server held a candidate's override at the end
    now = client.get_model_config(MODEL, as_json=True)["config"]
    assert now == on_disk  # the on-disk config, not the override tune started from
    disk = parse_config((artifacts / "repositories" / "embedded" / "batching_on" / MODEL / "config.pbtxt").read_text())
    assert now["instance_group"][0]["count"] == disk.instance_group[0].count == 1
    assert doc["restored"]["matches_initial"] is False and "differs from what was served before tuning" in done.stdout
    client.close()


def test_tune_refuses_a_model_that_is_not_served_and_a_seed_only_space(explicit_server, artifacts, tmp_path):
    ep = explicit_server.endpoints
    common = ("--url", ep.grpc, "--metrics-url", ep.metrics, "--artifacts", str(artifacts), "--out", str(tmp_path))
    # v2 is in the repository but not loaded: not served.
    assert_clean_error(run_axon("tune", "--model", "v2", *common, timeout=60), "is not served")
    assert_clean_error(run_axon("tune", "--model", "nope", *common, timeout=60), "is not served")
    assert_clean_error(run_axon("tune", "--model", "v1", "--instances", "1", *common, timeout=60), "empty space: every value given is the seed's own")


def test_tune_refuses_a_server_not_in_explicit_mode(artifacts, tmp_path):
    from axon.serving.embedded import EmbeddedServer

    # No model list: Triton's default model-control mode, which refuses load_model.
    with EmbeddedServer(artifacts / "repositories" / "embedded" / "batching_on") as server:
        ep = server.endpoints
        done = run_axon("tune", "--url", ep.grpc, "--metrics-url", ep.metrics, "--model", "v1", "--artifacts", str(artifacts), "--out", str(tmp_path), timeout=60)
    assert_clean_error(done, "refuses model loads", "--model-control-mode=explicit")
