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

# Dependencies first, from pyproject.toml alone, so a source change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY README.md ./
COPY src ./src
RUN pip install . \
    && notifyflow --help >/dev/null

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
