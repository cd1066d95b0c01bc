# One image for every service; the command picks which one runs:
#   python -m services.<access|keyvault|catalog|proxy|console> --host 0.0.0.0 --port <port>
#
# The base is pinned by tag here. Production builds should pin it by digest as well,
# e.g. --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>, so a rebuild cannot
# silently pick up a different base.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the locked runtime dependencies in a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN ["python", "-m", "venv", "/opt/venv"]

COPY requirements/runtime.txt /tmp/requirements/runtime.txt

# Every distribution is pinned and hash-checked; --no-deps means nothing outside the lock
# is installed, and wheels only means no compiler is needed and no setup.py runs.
RUN ["/opt/venv/bin/pip", "install", "--require-hashes", "--no-deps", "--only-binary=:all:", "-r", "/tmp/requirements/runtime.txt"]

# --- runtime: the virtualenv and our code, nothing else -------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="byom-gateway" \
      org.opencontainers.image.description="BYOM gateway services: access, keyvault, catalog, proxy, console" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /app

COPY --from=build /opt/venv /opt/venv
COPY shared/ /app/shared/
COPY services/ /app/services/

# Compiled now, because the root filesystem is read-only at run time.
RUN ["/opt/venv/bin/python", "-m", "compileall", "-q", "/app/shared", "/app/services"]

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Code and dependencies stay owned by root and read-only for the process.
USER 10001:10001

EXPOSE 8000 8001 8002 8003 8004

CMD ["/opt/venv/bin/python", "-m", "services.proxy", "--host", "0.0.0.0", "--port", "8000"]
