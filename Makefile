# DiagnoseNET workflow — two commands on a fresh machine:
#   make run    install everything into .venv and run the whole workflow on the embedded data
#   make test   install everything into .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CORES  ?= 2
# rules call `diagnosenet` and `mpirun` from the venv
export PATH := $(abspath $(BIN)):$(PATH)
STAMP   = $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install report lint clean dry-run

install: $(STAMP)

# uv installs the pinned stack in ~2 min instead of ~20 with plain pip; the stamp makes
# reruns instant until requirements.lock or pyproject.toml change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv>=0.5"
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# a hard kill leaves Snakemake's lock behind: stale_lock unlocks only if no Snakemake runs here
run: install
	$(BIN)/python -m diagnosenet.stale_lock
	$(BIN)/snakemake --cores $(CORES) --printshellcmds
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

test: install
	$(BIN)/python -m pytest

dry-run: install
	$(BIN)/snakemake -n --cores $(CORES)

lint: install
	$(BIN)/snakemake --lint

clean:
	rm -rf results/* .snakemake
	touch results/.gitkeep
