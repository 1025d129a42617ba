# hicl: `make demo` runs the main job end to end, `make test` the suite; both set up .venv first when missing.
SHELL := /bin/bash
PY := .venv/bin/python
DATASET ?= synthetic-scannet
DATA_ROOT ?= data/raw/$(DATASET)
STORE_ROOT ?= data/stores/$(DATASET)
WORKERS ?= 2
SCHEDULER ?=
ARGS ?=
CONFIG ?= trainer/presets/synthetic-scannet.yaml

PIPELINE_OPTS = --dataset $(DATASET) --data-root $(DATA_ROOT) --store-root $(STORE_ROOT) --workers $(WORKERS) \
	$(if $(SCHEDULER),--scheduler $(SCHEDULER),) $(if $(VERSION),--set scenes.version=$(VERSION),)

.PHONY: setup test demo preprocess status train bench lint

$(PY):
	bash scripts/setup.sh

setup:
	bash scripts/setup.sh

.PHONY: setup-gpu
setup-gpu: | $(PY)  # MinkowskiEngine with CUDA (patched for CUDA 13); ARGS="--build-only" etc.
	PYTHON=$(PY) bash scripts/setup_gpu.sh $(ARGS)

test: | $(PY)
	$(PY) -m pytest -q tests

demo: | $(PY)
	bash scripts/demo.sh

preprocess: | $(PY)
	$(PY) -m pipeline.cli run $(PIPELINE_OPTS) $(ARGS)

status: | $(PY)
	$(PY) -m pipeline.cli status --dataset $(DATASET) --data-root $(DATA_ROOT) --store-root $(STORE_ROOT) $(if $(VERSION),--set scenes.version=$(VERSION),)

train: | $(PY)
	.venv/bin/hicl-train fit --config $(CONFIG) $(ARGS)

bench: | $(PY)  # speed and memory; the quality benchmarks are bench-quality (Table 2, hours) and bench-labels
	for b in benchmarks/bench_*.py; do [ $$b = benchmarks/bench_quality.py ] && continue; \
		[ $$b = benchmarks/bench_labels.py ] && continue; \
		echo "== $$b"; $(PY) $$b || exit 1; done

.PHONY: bench-quality
bench-quality: | $(PY)
	$(PY) benchmarks/bench_quality.py $(ARGS)

.PHONY: bench-labels
bench-labels: | $(PY)  # the labels before training on the benchmark world (minutes once the world is prepared)
	$(PY) benchmarks/bench_labels.py $(ARGS)

lint: | $(PY)
	$(PY) -m ruff check pipeline trainer tests benchmarks scripts

.PHONY: docs
docs: | $(PY)  # the docs site (MkDocs, Material theme) into site/, built strictly
	.venv/bin/mkdocs build --strict --site-dir site
