# The README's two front-door commands: `make bench` (the main job) and `make test`.
# Each one does all set-up on a fresh machine: the virtual environment lives in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.axon-installed
ARTIFACTS ?= artifacts
RESULTS ?= results
# Bytecode is cached: each of the suite's hundreds of python processes (workers, `axon` runs,
# inner pytest sessions) would otherwise compile axon and rewrite the tests' asserts anew.
unexport PYTHONDONTWRITEBYTECODE
TEST_WORKERS ?= $(shell n=$$(( 2 * $$(nproc 2>/dev/null || echo 1) )); [ $$n -gt 8 ] && n=8; echo $$n)

.PHONY: setup h2load image bench test lint clean reliability-doc peers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to 2.13.0 (its CPU build); a range would pull a CUDA build of several GB.
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all]'
	touch $(STAMP)

setup: $(STAMP) h2load

# The native engine drives h2load (nghttp2-client). As root with apt-get it is installed here;
# elsewhere we say once how to install it, and --engine auto uses the python engine (saying so).
h2load:
	@command -v h2load >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing h2load (apt-get install nghttp2-client)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null; \
	  else \
	    echo "axon: h2load not found: the native engine needs it (Debian/Ubuntu: sudo apt-get install nghttp2-client; macOS: brew install nghttp2); until then --engine auto uses the python engine"; \
	  fi; }

# Main job: train and export v1, v2 and the point-cloud tagger pn, write every repository, check the embedded server with one
# request per model, then run the whole study and write $(RESULTS)/report.md with its plots.
bench: setup
	$(VENV)/bin/axon train --dataset $${AXON_DATA:-synthetic} --models v1,v2,pn --out $(ARTIFACTS) --gpu-repository model_repository
	$(VENV)/bin/axon serve --check --artifacts $(ARTIFACTS) --batching both
	$(VENV)/bin/axon study --artifacts $(ARTIFACTS) --out $(RESULTS)

# The CPU Triton image of the docker backend, axon/triton-cpu:<version>, built with no registry
# (debootstrap + a host-side wheelhouse; caches in .cache/image). Skipped when the tag exists.
image: setup
	PY=$(PY) ./docker/build_image.sh

# The tests, then a smoke of the benchmark suite (3 quick cases; budgets that fail only when broken).
# Not beside the parallel tests: its open-loop cases judge the client's schedule, which a busy
# machine breaks (tried: "the client fell behind its schedule").
# The tests run on TEST_WORKERS pytest-xdist workers, a test module to a worker (its servers and
# fixtures stay together): most tests wait on servers and subprocesses, so twice the cores keeps
# them busy (at most 8). Tests marked `alone` judge timing the machine must keep, so they run
# first, on a quiet machine, as a user's bench would.
# First the container engine (docker/engine.sh: as root on Debian it installs and starts one) and
# the CPU image, once per run; the container tests skip, saying why, where there is neither.
# A dockerd started here is stopped at the end, whatever happened (the trap).
test: setup lint
	@trap './docker/engine.sh stop' EXIT; \
	./docker/engine.sh start; \
	reason="$$(PY=$(PY) ./docker/engine.sh reason)"; require=; \
	if [ -z "$$reason" ]; then PY=$(PY) ./docker/build_image.sh || exit 1; require=1; else echo "axon: $$reason; the container tests skip"; fi; \
	set -e; \
	AXON_REQUIRE_DOCKER=$$require $(PY) -m pytest -q -p no:cacheprovider -m alone tests; \
	AXON_REQUIRE_DOCKER=$$require $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope -m 'not alone' --durations=25 tests; \
	mkdir -p $(RESULTS); \
	$(PY) -m pytest -q -p no:cacheprovider benchmarks -m axon_smoke --axon-duration 2 --axon-warmup 0.5 \
		--axon-slo-file benchmarks/smoke-slo.toml --benchmark-json $(RESULTS)/smoke-benchmark.json

# The fault matrix and TLS cases against real servers; their observations rendered into docs/reliability.md.
reliability-doc: setup
	AXON_RELIABILITY_DIR=docs/reliability $(PY) -m pytest -q -p no:cacheprovider tests/test_faults.py tests/test_tls.py
	$(PY) scripts/reliability_doc.py

# Peers side by side (docs/peers.md): Triton's perf_analyzer
# from the tritonclient 2.50.0 manylinux wheel (the last that ships it) and libcudart from the
# nvidia-cuda-runtime-cu12 wheel, installed into .peers/ (never the main venv's dependencies;
# libb64-0d from Debian), then perf_analyzer, raw h2load and both axon engines on one server.
PEERS := .peers
$(PEERS)/site/bin/perf_analyzer:
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(PEERS)/site tritonclient==2.50.0 nvidia-cuda-runtime-cu12==12.9.79
	@ldconfig -p 2>/dev/null | grep -q libb64.so.0d || { 	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then 	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null; 	  else echo "perf_analyzer needs libb64.so.0d: sudo apt-get install libb64-0d"; exit 2; fi; }

peers: setup $(PEERS)/site/bin/perf_analyzer
	$(PY) benchmarks/peers.py --peers $(PEERS)/site --artifacts $(ARTIFACTS) --output $(RESULTS)/peers.json

# ruff's rules and its formatting (pyproject.toml), as `tox -e lint`; make test runs it first.
lint: setup
	$(VENV)/bin/ruff check axon tests benchmarks scripts conftest.py
	$(VENV)/bin/ruff format --check axon tests benchmarks scripts conftest.py

clean:
	rm -rf $(VENV) $(ARTIFACTS) $(RESULTS) .cache/image
