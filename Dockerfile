# mender-backup image: the `mender-backup` command the chart's CronJob runs.
# Build: docker build -t mender-backup:0.1.0 .

# --- builder: turns the source into a wheel (build tools stay in this stage) ---
FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY backup ./backup
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final: the wheel and its runtime dependencies, nothing else ---
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
COPY --from=builder /wheels /wheels
# One layer: install, drop the wheel, add the unprivileged user the chart runs as.
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin mender-backup
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["mender-backup"]
CMD ["--help"]
