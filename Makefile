# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.medvlm-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check
export PYTHONHASHSEED := 0

.PHONY: demo demo-pretrained test install lint bench clean

demo: $(STAMP)
	$(BIN)/medvlm demo --out demo_out

# the pretrained preset on the same data, beside the tiny one in demo_out/report.html (~15 min on 2 cores)
demo-pretrained: $(STAMP)
	$(BIN)/medvlm demo --preset pretrained --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

install: $(STAMP)

# torch first and exactly 2.13.0 (the local CPU build): any looser spec pulls GBs of CUDA packages.
$(STAMP): pyproject.toml requirements/nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[eval,dev,dicom-codecs,pretrained]"
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) demo_out .pytest_cache
