# Two entry points for a fresh machine: `make demo` and `make test` (see README).
#
# Variables (each also settable in the environment):
#   PYTHON=venv/bin/python   the interpreter everything is installed into and run with (default python3)
#   TORCH_INDEX=URL          where to get torch when none is importable; unset = PyPI (see `setup`)
#   PORT=3001                the port of `make dev` (default 3000)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PORT ?= 3000
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=
CORPUS ?= ../shared/corpora/bench_50mb.txt.gz

# This checkout's Dagster instance, and the .env that names it (see `dotenv`); tests point both
# elsewhere. An exported DAGSTER_HOME wins, here and in .env.
PROJECT_DAGSTER_HOME := $(CURDIR)/data/dagster_home
DOTENV := .env
export DAGSTER_HOME ?= $(PROJECT_DAGSTER_HOME)

# A stamp per interpreter, so that `make dev` starts without reinstalling and another PYTHON (a new
# venv) still gets its own install. Rebuilt when the packaging or the C accelerator changes;
# `make -B setup` forces a reinstall.
PYTHON_ID := $(shell $(PYTHON) -c "import hashlib, sys; print(hashlib.sha1(sys.executable.encode()).hexdigest()[:12])" 2>/dev/null)
STAMP_DIR ?= build/make-stamps
SETUP_STAMP ?= $(STAMP_DIR)/setup-$(PYTHON_ID)
TEST_STAMP ?= $(STAMP_DIR)/setup-test-$(PYTHON_ID)
BENCH_STAMP ?= $(STAMP_DIR)/setup-bench-$(PYTHON_ID)
# The C sources by wildcard: they move (cs336_core/bpe/ now), and a named file that is gone stops make.
INSTALL_INPUTS := pyproject.toml setup.py $(wildcard cs336_core/*.c cs336_core/*/*.c cs336_core/*/*.h)
, := ,
TORCH_PIP_ARGS = $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )torch==$(TORCH_VERSION)
TORCH_NOTE = $(if $(TORCH_INDEX),installing torch==$(TORCH_VERSION) from $(TORCH_INDEX),installing torch==$(TORCH_VERSION) from PyPI: on Linux x86_64 that is the CUDA build$(,) several GB. For the CPU-only build: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu)

.PHONY: setup setup-test setup-bench dotenv chromium demo test test-fast bench bench-tokenizer bench-model dev gpu-check bench-rehearsal

setup: $(SETUP_STAMP)
	@$(MAKE) --no-print-directory dotenv

# torch first, and only when none is importable, so a GPU user's own build is kept. PyPI's torch for
# Linux x86_64 is the CUDA build (several GB of nvidia-* wheels); TORCH_INDEX points pip at another
# index for torch alone, e.g. PyTorch's CPU-only wheels:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
$(SETUP_STAMP): $(INSTALL_INPUTS)
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "keeping the installed torch $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "$(TORCH_NOTE)"; \
		$(PIP) install $(TORCH_PIP_ARGS); \
	fi
	$(PIP) install -q -e .
	@mkdir -p $(@D) && touch $@

# .env (git-ignored): every `dagster` command run from this directory reads it, so a plain
# `dagster asset materialize ...` records its run in this checkout's instance, the one `make dev`
# shows, instead of a throwaway one. It must hold an absolute path (Dagster refuses a relative
# DAGSTER_HOME), hence written here per checkout. `${DAGSTER_HOME:-...}` keeps an exported one.
# Other lines of an existing .env are kept.
DOTENV_LINE := DAGSTER_HOME="$${DAGSTER_HOME:-$(PROJECT_DAGSTER_HOME)}"
dotenv:
	@test -f "$(PROJECT_DAGSTER_HOME)/dagster.yaml" || \
		DAGSTER_HOME="$(PROJECT_DAGSTER_HOME)" $(PYTHON) -m cs336_assets.demo --prepare-only
	@line='$(DOTENV_LINE)'; \
	if ! grep -qxF "$$line" "$(DOTENV)" 2>/dev/null; then \
		{ grep -v '^DAGSTER_HOME=' "$(DOTENV)" 2>/dev/null; echo "$$line"; } > "$(DOTENV).tmp" && \
		mv "$(DOTENV).tmp" "$(DOTENV)" && echo "wrote $(DOTENV): $$line"; \
	fi

setup-test: $(TEST_STAMP) setup

$(TEST_STAMP): $(SETUP_STAMP)
	$(PIP) install -q -e '.[test]'
	@mkdir -p $(@D) && touch $@

# The tokenizer benchmark's peers (gigatoken, rustbpe, HF tokenizers, tiktoken): bench-only.
setup-bench: $(BENCH_STAMP) setup-test

$(BENCH_STAMP): $(TEST_STAMP)
	$(PIP) install -q -e '.[test,bench]'
	@mkdir -p $(@D) && touch $@

# The browser test drives Debian's Chromium (no browser download is possible here).
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

demo: setup
	$(PYTHON) -m cs336_assets.demo

# `exec`: the shell gives way to Dagster, so the SIGTERM that make forwards to its child (and the
# Ctrl-C the terminal sends) reaches `dagster dev`, which then stops its webserver and daemon.
dev: setup
	@test -f "$$DAGSTER_HOME/dagster.yaml" || $(PYTHON) -m cs336_assets.demo --prepare-only
	exec $(PYTHON) -m dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

test: setup-test chromium
	$(PYTHON) -m pytest -q

test-fast: setup-test
	$(PYTHON) -m pytest -q -m "not slow and not e2e"

bench: bench-tokenizer bench-model

bench-tokenizer: setup-bench
	$(PYTHON) bench/bench_tokenizer.py --corpus $(CORPUS)
	$(PYTHON) bench/bench_tokenizer.py --corpus $(CORPUS) --vocab gpt2 --skip-train
	$(PYTHON) bench/bench_bpe_scaling.py --corpus $(CORPUS)

bench-model: setup-test
	$(PYTHON) bench/bench_model.py --repeats 3 --steps 1 --batch-sizes 8 32 --compile

# One CUDA GPU, at most ~8 minutes; writes $(GPU_CHECK_OUT)/gpu_check.{json,md}.
# `make gpu-check GPU_CHECK_ARGS=--dry-run GPU_CHECK_OUT=/tmp/dry` runs the same code on the CPU in
# seconds (no figures); give it another GPU_CHECK_OUT so that it does not replace a GPU run's results.
GPU_CHECK_OUT ?= bench/results/gpu_check
gpu-check: setup
	$(PYTHON) bench/gpu_check.py --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# The `cpu` preset's shapes on the benchmark corpus (tokenizers, encodings, training steps); its
# duration with the defaults is in bench/cpu_rehearsal.py --help and docs/benchmarks.md.
REHEARSAL_OUT ?= bench/results/cpu_rehearsal
bench-rehearsal: setup
	nice $(PYTHON) bench/cpu_rehearsal.py --corpus $(CORPUS) --out $(REHEARSAL_OUT) $(REHEARSAL_ARGS)
