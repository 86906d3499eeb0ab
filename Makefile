# mender-backup developer entry points. `make demo` and `make test` are all a
# fresh machine needs; both build the test environment first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help venv test-env test demo bench lint lock clean

help:
	@echo "make demo      seed a local MongoDB (FerretDB) + MinIO, back up, wipe, restore, verify"
	@echo "make test      build the test environment and run the whole test suite"
	@echo "make test-env  build MinIO, FerretDB, helm v3/v4, etcd, kube-apiserver (pinned) into ~/.cache/mender-backup-testenv"
	@echo "make bench     side-by-side benchmarks (not part of make test)"
	@echo "make lint      helm lint the chart with helm v3 and v4"

$(VENV)/.installed: pyproject.toml requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/runtime.txt
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test-env:
	bash testenv/build.sh

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

# The hashed lock of the runtime dependencies (the image and the helm plugin install it).
lock: venv
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --no-header --annotation-style line -o requirements/runtime.txt.new
	{ echo "# The exact runtime dependencies of mender-backup, with their hashes: what the image and"; \
	  echo "# the helm plugin install (pip install --require-hashes). Regenerate with \`make lock\`."; \
	  cat requirements/runtime.txt.new; } > requirements/runtime.txt && rm requirements/runtime.txt.new

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
