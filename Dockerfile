# mender-backup image: the `mender-backup` command the chart's CronJob runs.
# Build: make image (podman or docker), or docker build -t mender-backup:$(VERSION) .

# --- builder: turns the source into a wheel (build tools stay in this stage) ---
FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mender_backup ./mender_backup
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final: the locked runtime dependencies and the wheel, nothing else ---
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
COPY requirements/runtime.txt /tmp/runtime.txt
COPY --from=builder /wheels /wheels
# One layer: exact dependencies (versions and hashes from the lock), our wheel without
# resolving again, then the unprivileged user the chart runs as.
RUN pip install --no-cache-dir --require-hashes -r /tmp/runtime.txt \
 && pip install --no-cache-dir --no-deps /wheels/*.whl \
 && rm -rf /wheels /tmp/runtime.txt \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin mender-backup
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mender-backup"]
CMD ["--help"]
