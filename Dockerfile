# syntax=docker/dockerfile:1
# One image for every notifyflow process: `worker`, `api`, `db upgrade`, and the rest of the CLI.
#
#   docker build -t notifyflow:local .
#   docker run --rm notifyflow:local --help
#
# No HEALTHCHECK here: the same image runs the worker and one-shot migrations, which serve no
# HTTP. The API's health check (GET /healthz) lives in docker-compose.yml and uses the
# image's own Python, so the image needs no curl.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv holding the project and its pinned dependencies ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/notifyflow
ENV PATH=/opt/notifyflow/bin:$PATH
WORKDIR /src

# Dependencies first, from the runtime lock alone (exact versions and hashes; no Temporal
# binaries, no test tools), so a source change reuses this layer.
COPY requirements/runtime.lock ./requirements/
RUN pip install -r requirements/runtime.lock

COPY pyproject.toml README.md ./
COPY src ./src
# --no-deps: the lock above is the whole dependency set; pip check proves it is complete.
RUN pip install --no-deps . \
    && pip check \
    && notifyflow --version

# ---- runtime: the virtualenv, a non-root user, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/notifyflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 notifyflow \
    && useradd --system --uid 10001 --gid notifyflow --create-home --home-dir /home/notifyflow notifyflow
COPY --from=build /opt/notifyflow /opt/notifyflow
USER notifyflow:notifyflow
WORKDIR /home/notifyflow
EXPOSE 8000
ENTRYPOINT ["notifyflow"]
CMD ["--help"]
