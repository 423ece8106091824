"""The benchmark matrix: model x batching x concurrency (closed loop), plus open-loop rates.

Open loop comes in two arrival processes: constant spacing (``--axon-engine auto``: the native
engine, h2load keeping the schedule up to the server's limit) and Poisson (always the python
engine, which h2load cannot replace: it has no Poisson mode). Each record names its engine.

    pytest benchmarks --benchmark-json out.json                   # embedded Triton (default)
    pytest benchmarks --triton=docker                             # the GPU container
    pytest benchmarks --triton=external --triton-url host:8001    # an existing server
    pytest benchmarks --axon-onnx tagger.onnx --axon-shape points:16,3  # your own model beside v1 and v2

Each case's pytest-benchmark samples are its per-request latencies; extra_info["axon"] holds
the whole result record. Budgets come from [[tool.axon.slo]] in pyproject.toml.
"""

from __future__ import annotations

import pytest

BATCHING = ("on", "off")
CONCURRENCY = (1, 4, 16, 64, 128, 256)
RATES = (500, 1000, 2000, 4000)  # Poisson, python engine: it falls behind its schedule above ~3,500/s here
CONSTANT_RATES = (1000, 4000, 8000, 12000)  # constant spacing, native engine: up to the server's limit


@pytest.mark.parametrize("concurrency", CONCURRENCY, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("batching", BATCHING, ids=lambda b: f"batching-{b}")
@pytest.mark.axon_models  # v1, v2 and every --axon-onnx model
def test_closed_loop(axon_bench, model, batching, concurrency):
    axon_bench(model, batching, concurrency=concurrency)


@pytest.mark.parametrize("rate", CONSTANT_RATES, ids=lambda r: f"rate{r}")
@pytest.mark.parametrize("batching", BATCHING, ids=lambda b: f"batching-{b}")
@pytest.mark.axon_models  # v1, v2 and every --axon-onnx model
def test_open_loop_constant(axon_bench, model, batching, rate):
    axon_bench(model, batching, rate=float(rate), distribution="constant")


@pytest.mark.parametrize("rate", RATES, ids=lambda r: f"rate{r}")
@pytest.mark.parametrize("batching", BATCHING, ids=lambda b: f"batching-{b}")
@pytest.mark.axon_models  # v1, v2 and every --axon-onnx model
def test_open_loop_poisson(axon_bench, model, batching, rate):
    axon_bench(model, batching, rate=float(rate), distribution="poisson")
