# Data manager's entry points. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CLI    := $(BIN)/python -m pipeline

.PHONY: install validate sdtm test raw bench spec-xlsx clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## validate: run the raw-extract schema gate for every study (exit 1 on data errors)
validate: $(STAMP)
	$(CLI) validate

## sdtm: gate, then build SDTM, exports, define.xml and listings into sdtm/
sdtm: $(STAMP)
	$(CLI) build

## test: the test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## raw: regenerate the embedded synthetic extracts under raw/ (byte-identical)
raw: $(STAMP)
	$(CLI) simulate

## bench: large synthetic study, time and peak memory per stage -> bench/results.md
bench: $(STAMP)
	$(BIN)/python bench/run.py

## spec-xlsx: Excel view of the SDTM specification
spec-xlsx: $(STAMP)
	$(CLI) spec-xlsx

clean:
	rm -rf $(VENV) build *.egg-info
