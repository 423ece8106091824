"""When pytest-benchmark gates (--benchmark-compare-fail), axon's summary says what its runs could tell from noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from axon.verdicts import gate, runs

pytest_plugins = ["pytester"]

NOISE_FILES = sorted((Path(__file__).parent / "data" / "history_noise").rglob("*.json"))

# A case that hands pytest-benchmark a recorded axon record (as axon_bench does after a run):
# the summary reads only what the benchmark fixture holds, so no server is needed here.
RECORDED = """
import json, os
from axon.pytest_plugin.fixture import feed_benchmark

def test_case(benchmark):
    feed_benchmark(benchmark, json.loads(open(os.environ["AXON_TEST_RECORD"]).read()))
"""


def _record(indices: list[int]) -> dict:
    """The recorded runs ``indices`` as one case's record, pooled as --axon-repeat pools them."""
    records = [json.loads(NOISE_FILES[i].read_text())["benchmarks"][0]["extra_info"]["axon"] for i in indices]
    if len(records) == 1:
        return records[0]
    return {**records[0], "repeats": [{**r, "repeat": {"index": i, "of": len(records)}} for i, r in enumerate(records)]}


def _gated_run(pytester, monkeypatch, saved: list[int], now: list[int], fail: str) -> pytest.RunResult:
    pytester.makepyfile(RECORDED)
    storage = f"--benchmark-storage=file://{pytester.path / 'history'}"
    for indices, extra in (
        (saved, ["--benchmark-autosave"]),
        (now, ["--benchmark-compare=0001", f"--benchmark-compare-fail={fail}"]),
    ):
        path = pytester.path / "record.json"
        path.write_text(json.dumps(_record(indices)))
        monkeypatch.setenv("AXON_TEST_RECORD", str(path))
        result = pytester.runpytest_subprocess(storage, "-p", "no:cacheprovider", *extra)
    return result


def test_gate_on_three_runs_a_side_states_its_smallest_detectable_change(pytester, monkeypatch):
    result = _gated_run(pytester, monkeypatch, [0, 1, 2], [3, 4, 5], "median:1000%")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    old = [r for i in (0, 1, 2) for r in runs.load_runs(NOISE_FILES[i]).values()]
    new = [r for i in (3, 4, 5) for r in runs.load_runs(NOISE_FILES[i]).values()]
    v = gate.judge("test_case", [r[0] for r in old], [r[0] for r in new], "p50_ms")
    line = f"gate: a change under {v.detectable:.0%} could not be told from noise with 3 runs a side (alpha 0.01, run-to-run spread ±{v.spread:.0%})"
    out = result.stdout.str()
    assert line in out and "it is not a significance test" in out, out


def test_gate_on_one_run_a_side_says_nothing_could_be_told_even_when_it_fails(pytester, monkeypatch):
    """The saved run is 65% faster in p50: pytest-benchmark fails the session by raising from its
    summary, and axon's line is printed before that."""
    result = _gated_run(pytester, monkeypatch, [0], [4], "median:10%")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret != pytest.ExitCode.OK and "Performance has regressed" in out, out
    assert "gate: no change of any size could be told from noise with 1 run a side" in out, out


def test_no_gate_no_line(pytester, monkeypatch):
    pytester.makepyfile(RECORDED)
    path = pytester.path / "record.json"
    path.write_text(json.dumps(_record([0])))
    monkeypatch.setenv("AXON_TEST_RECORD", str(path))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK and "gate:" not in result.stdout.str()


@pytest.mark.server
def test_gate_over_real_repeats(pytester, artifacts, server_v1):
    """Two real runs a side through axon_bench: the summary names 2 runs a side and a size."""
    pytester.makepyfile("def test_case(axon_bench):\n    axon_bench('v1', 'on', concurrency=2)\n")
    ep = server_v1.endpoints
    common = ["--axon-artifacts", str(artifacts), "--axon-duration", "0.5", "--axon-warmup", "0.2", "--axon-repeat", "2", "-p", "no:cacheprovider",
              "--triton=external", "--triton-url", ep.grpc, "--triton-metrics-url", ep.metrics, "--triton-batching", "on",
              f"--benchmark-storage=file://{pytester.path / 'history'}"]  # fmt: skip
    saved = pytester.runpytest_subprocess(*common, "--benchmark-autosave")
    assert saved.ret == pytest.ExitCode.OK, saved.stdout.str()
    gated = pytester.runpytest_subprocess(*common, "--benchmark-compare=0001", "--benchmark-compare-fail=median:1000%")
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
    gated.stdout.re_match_lines(
        [r"gate: a change under \d+% could not be told from noise with 2 runs a side \(alpha 0\.01, run-to-run spread ±\d+%\)"]
    )
