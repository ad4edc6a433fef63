# Every target builds its own virtual environment, so a fresh machine needs only python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PLRP   := $(VENV)/bin/plrp
# The CPU build of torch lies on local disk; asking for it first keeps pip from pulling a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test model evaluate bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PLRP) demo --out demo-out/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) demo-out bench-out
