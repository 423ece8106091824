"""The benchmark matrix: model x batching x concurrency (closed loop), plus open-loop rates.

    pytest benchmarks --benchmark-json out.json                   # embedded Triton (default)
    pytest benchmarks --triton=docker                             # the GPU container
    pytest benchmarks --triton=external --triton-url host:8001    # an existing server

Each case's pytest-benchmark samples are its per-request latencies; extra_info["axon"] holds
the whole result record. Budgets come from [[tool.axon.slo]] in pyproject.toml.
"""

from __future__ import annotations

import pytest

MODELS = ("v1", "v2")
BATCHING = ("on", "off")
CONCURRENCY = (1, 4, 16, 64, 128, 256)
RATES = (500, 1000, 2000, 4000)


@pytest.mark.parametrize("concurrency", CONCURRENCY, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("batching", BATCHING, ids=lambda b: f"batching-{b}")
@pytest.mark.parametrize("model", MODELS)
def test_closed_loop(axon_bench, model, batching, concurrency):
    axon_bench(model, batching, concurrency=concurrency)


@pytest.mark.parametrize("rate", RATES, ids=lambda r: f"rate{r}")
@pytest.mark.parametrize("batching", BATCHING, ids=lambda b: f"batching-{b}")
@pytest.mark.parametrize("model", MODELS)
def test_open_loop_poisson(axon_bench, model, batching, rate):
    axon_bench(model, batching, rate=float(rate), distribution="poisson")
