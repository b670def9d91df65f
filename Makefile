# DiagnoseNET workflow — two commands on a fresh machine:
#   make run    install everything into .venv and run the whole workflow on the embedded data
#   make test   install everything into .venv and run the test suite
#   GPU=1       the same with TensorFlow built for CUDA (x86-64 Linux), in its own .venv-gpu
PYTHON ?= python3
GPU    ?=
LOCK    = $(if $(GPU),requirements-gpu.lock,requirements.lock)
VENV   ?= $(if $(GPU),.venv-gpu,.venv)
BIN     = $(VENV)/bin
CORES  ?= 2
# rules call `diagnosenet` and `mpirun` from the venv
export PATH := $(abspath $(BIN)):$(PATH)
STAMP   = $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install report lint clean dry-run slurm-packages locks

install: $(STAMP)

# uv installs the pinned stack in ~2 min instead of ~20 with plain pip; the stamp makes
# reruns instant until the lock or pyproject.toml change. The GPU lock has tensorflow[and-cuda]
# where the CPU one has tensorflow-cpu (two wheels of one module: hence a venv of its own).
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5"
	$(BIN)/uv pip install --python $(BIN)/python -r $(LOCK)
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# a hard kill leaves Snakemake's lock behind: stale_lock unlocks only if no Snakemake runs here
run: install
	$(BIN)/python -m diagnosenet.stale_lock
	$(BIN)/snakemake --cores $(CORES) --printshellcmds
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

# two xdist workers: most of the suite waits (throttled emulated nodes, Slurm's status queries,
# fault tests' silence bounds); tests/conftest.py keeps each module on one worker and the
# emulated-cluster modules together, one after another
TEST_WORKERS ?= 2
test: install slurm-packages
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder

# Debian's Slurm, munge, slurmdbd and MariaDB (accounting) for the emulated-Slurm tests, where
# missing and we are root on a Debian-like system (CI); elsewhere those tests are skipped and say why
SLURM_PACKAGES = slurm-wlm munge slurmdbd mariadb-server
slurm-packages:
	@if command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 \
	  && command -v slurmdbd >/dev/null 2>&1 && command -v mariadbd >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's $(SLURM_PACKAGES) (emulated-Slurm tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SLURM_PACKAGES) >/dev/null) \
	    || echo "slurm-packages: apt-get failed; the emulated-Slurm tests will fail and say why"; \
	else echo "slurm-packages: not root with apt-get: the emulated-Slurm tests are skipped"; fi

dry-run: install
	$(BIN)/snakemake -n --cores $(CORES)

lint: install
	$(BIN)/snakemake --lint

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep

# re-pin both locks (after a change of pyproject.toml's dependencies); the GPU lock replaces
# tensorflow-cpu by tensorflow[and-cuda] (extra `gpu`; requirements-gpu-overrides.txt drops the CPU
# wheel) and keeps every other pin of the CPU lock (--constraint)
locks: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra gpu --override requirements-gpu-overrides.txt \
	    --constraint requirements.lock --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    -o requirements-gpu.lock
