# mender-backup developer entry points. `make demo` and `make test` are all a
# fresh machine needs; both build the test environment first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help venv test-env test demo bench lint clean

help:
	@echo "make demo      seed a local MongoDB (FerretDB) + MinIO, back up, wipe, restore, verify"
	@echo "make test      build the test environment and run the whole test suite"
	@echo "make test-env  build MinIO, FerretDB, helm v3/v4, etcd, kube-apiserver (pinned) into ~/.cache/mender-backup-testenv"
	@echo "make bench     side-by-side benchmarks (not part of make test)"
	@echo "make lint      helm lint the chart with helm v3 and v4"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test-env:
	bash scripts/test-env.sh

test: venv test-env
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv test-env
	$(PY) -m scripts.demo

bench: venv test-env
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run

lint: test-env
	$(HOME)/.cache/mender-backup-testenv/bin/helm3 lint --strict chart/
	$(HOME)/.cache/mender-backup-testenv/bin/helm4 lint --strict chart/

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
