# Two entry points for a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
CORPUS ?= ../shared/corpora/bench_50mb.txt.gz

.PHONY: setup setup-test chromium demo test test-fast bench bench-tokenizer bench-model dev gpu-check bench-rehearsal

# torch first: on a machine without torch this takes the pinned CPU build instead of letting the
# open `torch>=` range pull a multi-GB CUDA build. A GPU user's own torch is kept.
setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -q -e .

setup-test: setup
	$(PIP) install -q -e '.[test]'

# The browser test drives Debian's Chromium (no browser download is possible here).
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

demo: setup
	$(PYTHON) -m cs336_assets.demo

dev: setup
	$(PYTHON) -m cs336_assets.demo --prepare-only
	dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: setup-test chromium
	$(PYTHON) -m pytest -q

test-fast: setup-test
	$(PYTHON) -m pytest -q -m "not slow and not e2e"

bench: bench-tokenizer bench-model

bench-tokenizer: setup-test
	$(PYTHON) bench/bench_tokenizer.py --corpus $(CORPUS)

bench-model: setup-test
	$(PYTHON) bench/bench_model.py --repeats 3 --steps 1 --batch-sizes 8 32 --compile

# One CUDA GPU, at most ~8 minutes; writes bench/results/gpu_check/gpu_check.{json,md}.
# `make gpu-check GPU_CHECK_ARGS=--dry-run` runs the same code on the CPU in seconds (no figures).
gpu-check: setup
	$(PYTHON) bench/gpu_check.py --out bench/results/gpu_check $(GPU_CHECK_ARGS)

# The `cpu` preset's shapes on the benchmark corpus (tokenizers, encodings, training steps): ~15 min on 2 cores.
bench-rehearsal: setup
	nice $(PYTHON) bench/cpu_rehearsal.py --corpus $(CORPUS) --out bench/results/cpu_rehearsal $(REHEARSAL_ARGS)
