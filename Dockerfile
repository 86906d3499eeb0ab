# mender-backup image: the `mender-backup` command the chart's CronJob runs.
# Build it with `make image` (podman or docker): it first puts the locked runtime wheels
# and our own wheel into build/wheelhouse on the host, so the build itself needs no network.
# BASE: any image with python3 (3.11+) and its venv module; the tests use a Debian base
# made locally from Debian's packages (tests/ENVIRONMENT.md).
ARG BASE=python:3.12-slim

# --- builder: a venv with exactly the locked dependencies (hashes checked) and our wheel ---
FROM ${BASE} AS builder
# so the build can remove this stage's image afterwards (podman keeps it, dangling, ~350 MB a build)
LABEL io.mender-backup.stage=builder
COPY requirements/runtime.txt /tmp/runtime.txt
COPY build/wheelhouse /wheels
RUN python3 -m venv /opt/mender-backup \
 && /opt/mender-backup/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
      --find-links /wheels --require-hashes -r /tmp/runtime.txt \
 && /opt/mender-backup/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
      /wheels/mender_backup-*.whl

# --- final: the venv and an unprivileged user, nothing else (no pip cache, no wheels) ---
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PATH=/opt/mender-backup/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=builder /opt/mender-backup /opt/mender-backup
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin mender-backup
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mender-backup"]
CMD ["--help"]
