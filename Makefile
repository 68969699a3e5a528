# The two commands a fresh machine needs: `make serve` and `make test`.
VENV   := .venv
KSERVE := .venv-kserve
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODEL  ?= models/digits
RUN    ?= runs/digits
PORT   ?= 3000

.PHONY: setup lint test test-fast serve bench model clean fuzz

setup: $(STAMP)

# Re-installs only when the project's requirements change.
$(STAMP): pyproject.toml .ci/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c .ci/constraints.txt -e '.[train,dev]'
	touch $(STAMP)

# KServe's client, in an environment of its own (.ci/kserve-client.txt says why).
$(KSERVE)/.installed: .ci/kserve-client.txt
	test -x $(KSERVE)/bin/python || python3 -m venv $(KSERVE)
	$(KSERVE)/bin/python -m pip install -q -r .ci/kserve-client.txt
	touch $(KSERVE)/.installed

lint: setup
	$(BIN)/ruff check training export serving tests benchmarks

# Everything CI runs (.ci/run calls it).
test: lint $(KSERVE)/.installed
	$(PY) -m pytest -q

# The edit loop: everything but the tests marked slow (about a minute).
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The long fuzzing run: schemathesis against a real server, figures to benchmarks/results/fuzz.json.
fuzz: setup
	GANSERVE_FUZZ_EXAMPLES=300 GANSERVE_FUZZ_SEEDS='1 2' GANSERVE_FUZZ_RESULT=benchmarks/results/fuzz.json \
	  $(PY) -m pytest -q tests/serving/http/test_fuzz.py

# Trains and exports the default model (dcgan on the built-in digits) unless one exists.
model: setup
	@if [ ! -f $(MODEL)/model.json ]; then \
	  if [ ! -f $(RUN)/release/config.json ]; then $(BIN)/ganserve train --run-dir $(RUN); fi; \
	  $(BIN)/ganserve export $(RUN) --out $(MODEL) --force; \
	fi

serve: model
	$(BIN)/ganserve serve $(MODEL) --port $(PORT)

bench: model
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(KSERVE) runs models
