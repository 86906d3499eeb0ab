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
# WHEEL_ARCH: the image's machine (x86_64 or aarch64); pip matches platform tags exactly:
# every manylinux glibc level up to the base's (2.36)
WHEEL_ARCH   ?= $(shell uname -m)
WHEEL_TAGS   := $(foreach v,5 12 17 24 28 31 34 35 36,--platform manylinux_2_$(v)_$(WHEEL_ARCH))
# make release (scripts/release.sh): REGISTRY=host/org, the platforms of the image
REGISTRY          ?=
RELEASE_PLATFORMS ?= linux/amd64,linux/arm64
# scripts/image-sign: cosign-format image signatures (built without cgo or a container store)
IMAGE_SIGN      ?= build/bin/image-sign
IMAGE_SIGN_TAGS := containers_image_openpgp containers_image_storage_stub containers_image_docker_daemon_stub \
                   exclude_graphdriver_btrfs exclude_graphdriver_devicemapper

.PHONY: help venv test-env test-env-demo test demo bench lint lock image wheelhouse image-sign dist release release-host \
        release-credentials clean

help:
	@echo "make demo      seed a local MongoDB (DocumentDB) + MinIO, back up, wipe, restore, verify"
	@echo "make test      build the test environment and run the whole test suite"
	@echo "make test-env  build the test environment (tests/ENVIRONMENT.md) into ~/.cache/mender-backup-testenv"
	@echo "make image     build the container image (podman or docker; IMAGE, BASE, IMAGE_PYTHON)"
	@echo "make bench     side-by-side benchmarks (not part of make test)"
	@echo "make lint      helm lint the chart with helm v3 and v4"
	@echo "make dist      the release's chart and plugin tarballs, signed, and their SHA256SUMS (MENDER_BACKUP_SIGNING_KEY)"
	@echo "make release VERSION=x.y.z REGISTRY=host/org   image + chart pushed, signed, SBOM, dist/ (scripts/release.sh)"

$(VENV)/.installed: pyproject.toml requirements/runtime.txt requirements/release.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements/runtime.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/release.txt
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
image: wheelhouse
	$(ENGINE) build --network=none --build-arg BASE=$(BASE) -t $(IMAGE) .
	$(ENGINE) image prune --force --filter label=io.mender-backup.stage=builder >/dev/null

# the wheels the image installs, for WHEEL_ARCH
wheelhouse: venv
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PY) -m pip download --quiet --disable-pip-version-check --require-hashes -r requirements/runtime.txt \
	  --only-binary=:all: --python-version $(IMAGE_PYTHON) --implementation cp $(WHEEL_TAGS) -d $(WHEELHOUSE)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(WHEELHOUSE) .

image-sign: $(IMAGE_SIGN)

$(IMAGE_SIGN): scripts/image-sign/main.go scripts/image-sign/go.mod scripts/image-sign/go.sum
	cd scripts/image-sign && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -tags "$(IMAGE_SIGN_TAGS)" -o $(abspath $@) .

# The release's files into dist/, signed with MENDER_BACKUP_SIGNING_KEY (scripts/dist.sh says
# what each is and how a user verifies it).
dist:
	scripts/dist.sh dist

# The release (scripts/release.sh says each step and how a user verifies it): VERSION must be the
# tree's own (scripts/set-version.sh); keys: MENDER_BACKUP_SIGNING_KEY (gpg: chart, plugin, sums)
# and MENDER_BACKUP_COSIGN_KEY + MENDER_BACKUP_COSIGN_PASSWORD_FILE (the image). Needs podman.
release: venv image-sign
	@test -n "$(REGISTRY)" || { echo "error: make release needs REGISTRY=host/org (e.g. ghcr.io/mender-backup)" >&2; exit 2; }
	PY=$(PY) IMAGE_SIGN=$(IMAGE_SIGN) SYFT=$(VENV)/bin/syft BASE=$(BASE) IMAGE_PYTHON=$(IMAGE_PYTHON) \
	  RELEASE_PLATFORMS=$(RELEASE_PLATFORMS) scripts/release.sh $(VERSION) $(REGISTRY)

# CI's release job: its secrets (environment) into this run's gpg keyring, key files under
# build/keys (mode 600) and podman's and helm's registry logins; nothing printed.
release-credentials: test-env
	@umask 077 && mkdir -p build/keys
	@printf '%s\n' "$$RELEASE_GPG_PRIVATE_KEY" | gpg --batch --quiet --import
	@printf '%s\n' "$$RELEASE_COSIGN_PRIVATE_KEY" > build/keys/cosign.key
	@printf '%s\n' "$$RELEASE_COSIGN_PUBLIC_KEY" > build/keys/cosign.pub
	@printf '%s' "$$RELEASE_COSIGN_PASSWORD" > build/keys/cosign.password
	@printf '%s' "$$REGISTRY_PASSWORD" | podman login --username "$$REGISTRY_USER" --password-stdin "$${REGISTRY%%/*}"
	@printf '%s' "$$REGISTRY_PASSWORD" | $(HOME)/.cache/mender-backup-testenv/bin/helm4 registry login \
	  --username "$$REGISTRY_USER" --password-stdin "$${REGISTRY%%/*}"

# What a release host needs beyond a developer's (Debian or Ubuntu, as root or with sudo):
# podman, gpg, and qemu's binfmt handlers to build the other platform's image.
release-host:
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y --no-install-recommends podman gnupg qemu-user-static

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
