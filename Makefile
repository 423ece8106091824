# The README's two front-door commands: `make bench` (the main job) and `make test`.
# Each one does all set-up on a fresh machine: the virtual environment lives in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.axon-installed
ARTIFACTS ?= artifacts
RESULTS ?= results

.PHONY: setup bench test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to 2.13.0 (its CPU build); a range would pull a CUDA build of several GB.
	$(PY) -m pip install -q --disable-pip-version-check -e '.[all]'
	touch $(STAMP)

setup: $(STAMP)

# Main job: train and export v1/v2, write every repository, check the embedded server with one
# request per model, then run the whole study and write $(RESULTS)/report.md with its plots.
bench: setup
	$(VENV)/bin/axon train --dataset $${AXON_DATA:-synthetic} --out $(ARTIFACTS) --gpu-repository model_repository
	$(VENV)/bin/axon serve --check --artifacts $(ARTIFACTS) --batching both
	$(VENV)/bin/axon study --artifacts $(ARTIFACTS) --out $(RESULTS)

# The tests, then a smoke of the benchmark suite (3 quick cases; budgets that fail only when broken).
test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests
	mkdir -p $(RESULTS)
	$(PY) -m pytest -q -p no:cacheprovider benchmarks -m axon_smoke --axon-duration 2 --axon-warmup 0.5 \
		--axon-slo-file benchmarks/smoke-slo.toml --benchmark-json $(RESULTS)/smoke-benchmark.json

lint: setup
	$(VENV)/bin/ruff check axon tests benchmarks conftest.py

clean:
	rm -rf $(VENV) $(ARTIFACTS) $(RESULTS)
