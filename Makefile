# Data manager's entry points. Everything runs inside .venv, created on first use.
# The interpreter .venv is made with; PYTHON=/path/to/python3 chooses one. By default it is the
# system's /usr/bin/python3 when that is Python 3.11+ with venv, else python3 on PATH. Debian builds
# its CPython with profile-guided and link-time optimisation and links the interpreter statically;
# a version manager's default build (pyenv's python3 on these machines) has neither and runs the
# same build about 5-8 % slower, with the same output bytes (issue 14, bench/results.md).
# Expanded only when .venv is made.
PYTHON_CANDIDATES ?= /usr/bin/python3 python3
PYTHON ?= $(shell for c in $(PYTHON_CANDIDATES); do \
  "$$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo "$$c"; exit; }; \
  done; echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CLI    := $(BIN)/python -m pipeline
# CDISC CORE runs in its own Python 3.12 environment (the engine supports 3.12 only)
CORE_VENV  := .venv-core
CORE_STAMP := $(CORE_VENV)/.installed-stamp
PYTHON312  ?=
CORE_ARGS  ?=
BUILD_ARGS ?=
# The package's bytecode, brought up to date before every CLI run (about 0.04 s when it is). Where the
# environment sets PYTHONDONTWRITEBYTECODE (many containers do), Python never writes it, so every run
# would compile the ~90 modules a build imports again: about 0.3-0.4 s of CPU in the parent, before its
# workers start. It only ever speeds a run up; if the folder is read-only the run goes on without it.
BYTECODE   := $(BIN)/python -m compileall -q pipeline > /dev/null || echo "note: could not precompile pipeline/ (read-only?); the run is only slower" >&2

.PHONY: install validate sdtm test raw bench mutate spec-xlsx conformance package core-install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## validate: run the raw-extract schema gate for every study (exit 1 on data errors)
validate: $(STAMP)
	@$(BYTECODE)
	$(CLI) validate

## sdtm: gate, then build SDTM, exports, define.xml and listings into sdtm/
## (file creation stamps = SOURCE_DATE_EPOCH, by default the checkout's commit time: reruns are byte-identical)
## (a study whose inputs did not change since its last build keeps its outputs; BUILD_ARGS=--no-cache rebuilds all)
sdtm: $(STAMP)
	@$(BYTECODE)
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)} $(CLI) build $(BUILD_ARGS)

## package: the eCTD module 5 layout of every study -> submission/ (m5/datasets/<STUDYID>/tabulations/sdtm,
##   analysis/adam/datasets; Dataset-JSON beside it; sha256sums.txt); studies not built yet are built first
package: $(STAMP)
	@$(BYTECODE)
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null)} $(CLI) package --build-missing

## test: the test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## raw: regenerate the embedded synthetic extracts under raw/ (byte-identical)
raw: $(STAMP)
	$(CLI) simulate

## bench: large synthetic study, time and peak memory per stage -> bench/results.md
bench: $(STAMP)
	$(BIN)/python bench/run.py

## mutate: perturb each rule threshold in a scratch specs/ copy, run the rule tests -> bench/mutation_runs.jsonl, then bench/mutation_results.md (slow, ~1-2 h; not in make test)
mutate: $(STAMP)
	$(BIN)/python bench/mutate_rules.py && $(BIN)/python bench/mutate_rules.py --report

## spec-xlsx: Excel view of the SDTM specification
spec-xlsx: $(STAMP)
	$(CLI) spec-xlsx

## conformance: CDISC CORE (SDTMIG 3.4) on every built study -> sdtm/<STUDYID>/reports/core_*
##   its own Python 3.12 environment .venv-core (engine pinned in requirements-core.txt) is made
##   on first use; PYTHON312=/path/to/python3.12 chooses the interpreter; CORE_ARGS passes options
##   (e.g. CORE_ARGS="--study NCT05164042 --core-cache DIR")
conformance: $(STAMP) $(CORE_STAMP)
	$(CLI) conformance $(CORE_ARGS)

core-install: $(CORE_STAMP)

$(CORE_STAMP): requirements-core.txt
	@py=""; \
	for c in "$(PYTHON312)" python3.12 \
	         $$(ls -d "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V -r) \
	         /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	  if [ -n "$$c" ] && "$$c" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then py="$$c"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "conformance: CDISC CORE needs Python 3.12 and none was found. Install one, e.g." >&2; \
	  echo "  pyenv install 3.12      (then: make conformance)" >&2; \
	  echo "  apt-get install python3.12 python3.12-venv   (where the distribution has it)" >&2; \
	  echo "or name it: make conformance PYTHON312=/path/to/python3.12" >&2; \
	  exit 2; \
	fi; \
	echo "creating $(CORE_VENV) with $$py ($$("$$py" -V 2>&1))"; \
	rm -rf $(CORE_VENV) && "$$py" -m venv $(CORE_VENV) && \
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	$(CORE_VENV)/bin/python -m pip install --quiet -r requirements-core.txt && \
	touch $(CORE_STAMP)

clean:
	rm -rf $(VENV) $(CORE_VENV) build *.egg-info
