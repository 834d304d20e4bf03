# Set-up and the two commands of the README. Everything goes into .venv; re-running is cheap.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-modelopt.txt setup.py setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet -c requirements.txt -r requirements-modelopt.txt
	$(BIN)/python -m pip install --quiet --no-deps nvidia-modelopt==0.47.0
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# The main job on the built-in default: generated street scenes -> bag -> the node -> masks,
# overlays and a report under out/demo/.
demo: $(STAMP)
	$(BIN)/drn-demo --out out/demo

# The whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest -q test

clean:
	rm -rf $(VENV) out .lint-venv
