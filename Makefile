# Two commands: `make demo` runs the whole pipeline on the embedded demo (config.yaml);
# `make test` runs the test suite. Both create/update .venv idempotently first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CORES  ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv test demo lint dry-run report bench clean-demo

# Re-installs only when pyproject.toml changed since the last install.
# torch==2.14.1 / torchvision==0.29.1 come from this machine kind's local disk via plain pip.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

lint: $(STAMP)
	$(BIN)/snakemake --lint

dry-run: $(STAMP)
	$(BIN)/snakemake -n --cores $(CORES)

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean-demo:
	rm -rf results/demo
