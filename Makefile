# `make demo` and `make test` set everything up (idempotent) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kgzsl-installed
# torch/torchvision pinned to the pair this machine kind serves from local wheels (see pyproject.toml)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup system-deps demo test clean-venv

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[demo,test]"
	@touch $(STAMP)

# WordNet 3.0 (Debian wordnet-base) and Fashion-MNIST: installed when missing, if apt is usable.
system-deps:
	@sh scripts/install-system-deps.sh

demo: setup
	$(VENV)/bin/kgzsl demo

test: setup
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
