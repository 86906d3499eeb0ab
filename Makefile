# mender-backup developer entry points. `make demo` and `make test` are all a
# fresh machine needs; both build the test environment first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# three workers (the node's tests on one, in turn: tests/conftest.py); the slowest 30: where the
# CI time goes (tests/ENVIRONMENT.md). PYTEST_ARGS= runs everything in one process.
PYTEST_ARGS ?= -n 3 --durations=30

# The image: `make image` with podman, else docker. BASE is any image with python3 and
# its venv module; IMAGE_PYTHON is its Python version (the wheels are fetched for it).
VERSION      := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' mender_backup/__init__.py)
ENGINE       ?= $(shell command -v podman >/dev/null 2>&1 && echo podman || echo docker)
IMAGE        ?= mender-backup:$(VERSION)
BASE         ?= python:3.12-slim
IMAGE_PYTHON ?= 3.12
WHEELHOUSE   := build/wheelhouse
# pip matches platform tags exactly: every manylinux glibc level up to the base's (2.36)
PLATFORMS    := $(foreach v,5 12 17 24 28 31 34 35 36,--platform manylinux_2_$(v)_$(shell uname -m))

.PHONY: help venv test-env test-env-demo test demo bench lint lock image dist clean

help:
	@echo "make demo      seed a local MongoDB (DocumentDB) + MinIO, back up, wipe, restore, verify"
	@echo "make test      build the test environment and run the whole test suite"
	@echo "make test-env  build the test environment (tests/ENVIRONMENT.md) into ~/.cache/mender-backup-testenv"
	@echo "make image     build the container image (podman or docker; IMAGE, BASE, IMAGE_PYTHON)"
	@echo "make bench     side-by-side benchmarks (not part of make test)"
	@echo "make lint      helm lint the chart with helm v3 and v4"
	@echo "make dist      the release's chart and plugin tarballs, signed, and their SHA256SUMS (MENDER_BACKUP_SIGNING_KEY)"

$(VENV)/.installed: pyproject.toml requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/runtime.txt
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test-env:
	bash testenv/build.sh

# only what `make demo` runs: MinIO and DocumentDB
test-env-demo:
	bash testenv/build.sh --demo

test: venv test-env
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv test-env-demo
	$(PY) -m scripts.demo

bench: venv test-env
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench.run

lint: test-env
	$(HOME)/.cache/mender-backup-testenv/bin/helm3 lint --strict chart/
	$(HOME)/.cache/mender-backup-testenv/bin/helm4 lint --strict chart/

# Inside the image build there is no TLS to PyPI (and no network at all in some
# builders): the locked wheels, hashes checked, and our own wheel come from the host,
# and the build runs without a network to prove it needs none.
image: venv
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PY) -m pip download --quiet --disable-pip-version-check --require-hashes -r requirements/runtime.txt \
	  --only-binary=:all: --python-version $(IMAGE_PYTHON) --implementation cp $(PLATFORMS) -d $(WHEELHOUSE)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(WHEELHOUSE) .
	$(ENGINE) build --network=none --build-arg BASE=$(BASE) -t $(IMAGE) .

# The release's files into dist/, signed with MENDER_BACKUP_SIGNING_KEY (scripts/dist.sh says
# what each is and how a user verifies it).
dist:
	scripts/dist.sh dist

# The hashed lock of the runtime dependencies (the image and the helm plugin install it).
lock: venv
	$(PY) -m pip install --quiet uv
	cp requirements/runtime.txt requirements/runtime.txt.new   # uv keeps the pins it finds there
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --no-header --annotation-style line -o requirements/runtime.txt.new
	{ echo "# The exact runtime dependencies of mender-backup, with their hashes: what the image and"; \
	  echo "# the helm plugin install (pip install --require-hashes). Regenerate with \`make lock\`."; \
	  cat requirements/runtime.txt.new; } > requirements/runtime.txt && rm requirements/runtime.txt.new

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
