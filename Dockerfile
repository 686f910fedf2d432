# syntax=docker/dockerfile:1
# One image for every safetymon service and command:
#   docker build -t safetymon:0.1.0 .
#   docker run -e HEALTHCHECK_PORT=8002 ... safetymon:0.1.0 serve grader   (ENTRYPOINT: safetymon)
#   docker run ... safetymon:0.1.0 migrate | create-topics | dsmb-report ...
# docker-compose.yml and deploy/k8s/ use it; their comments say what each service needs.
#
# Not in the image, on purpose: the enrolment map (interop/<STUDY>.enrolment.csv maps hospital
# patient identifiers to study subjects, so it is patient data) and the users file of the safety
# desk. Mount both at run time (compose: secrets; Kubernetes: Secrets mounted as files) and name
# them with ENROLMENT_MAP_FILE and USERS_FILE. Secrets (SESSION_SECRET, SMTP_PASSWORD, the
# database password in DATABASE_URL) come from the environment only.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# build: the project's wheel, installed with its dependencies into a virtualenv (/opt/venv).
# --only-binary: every dependency ships wheels for CPython 3.11 on glibc (checked on x86_64), so
# no compiler is installed; a dependency without one fails the build here instead.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Only what the wheel is built from (pyproject's readme is README.md).
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/ services/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --only-binary=:all: /wheels/safetymon-*.whl \
    && /opt/venv/bin/safetymon --help >/dev/null

# ---------------------------------------------------------------------------------------------
# runtime: the virtualenv, the study's protocol and interop files, examples; runs as uid 10001.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="safetymon" \
      org.opencontainers.image.description="Event-sourced safety monitoring for oncology clinical trials: ingest, grader, alerts, dsmb" \
      org.opencontainers.image.version="0.1.0"

RUN groupadd --system --gid 10001 safetymon \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin safetymon

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Files the services read, owned by root and read-only to the service user. The wheel carries
# no protocols/ or interop/ (they sit beside the packages in the source tree), so PROTOCOL_FILE
# and INTEROP_FILE below name these copies; mount others over them, or set the variables.
COPY protocols/ /app/protocols/
# Only the sites' HL7 facilities and local codes (*.yaml); never the enrolment map (*.csv).
COPY interop/*.yaml /app/interop/
# Examples to copy from: deploy/users.example.yaml and deploy/senders.example.yaml hold published
# throwaway passwords and tokens and are never to be used with real data (see their headers).
COPY deploy/users.example.yaml deploy/senders.example.yaml deploy/routing.example.yaml /app/examples/

# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (Kubernetes); the wheel's modules
# were compiled at install. MPLCONFIGDIR: matplotlib (DSMB report plots) needs a writable cache
# directory: /tmp is the one writable place (an emptyDir in Kubernetes).
# HEALTHCHECK_PORT: the port HEALTHCHECK asks; set it to the service's port (8001 ingest, 8002
# grader, 8003 alerts, 8004 dsmb) when running another service than the default `serve ingest`.
ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HEALTHCHECK_PORT=8001 \
    BIND_HOST=0.0.0.0 \
    STUDY_ID=NCT05173246 \
    PROTOCOL_FILE=/app/protocols/NCT05173246.yaml \
    INTEROP_FILE=/app/interop/NCT05173246.yaml

USER 10001:10001

# HTTP of ingest, grader, alerts, dsmb; HL7 v2 over MLLP (ingest).
EXPOSE 8001 8002 8003 8004 2575

# Liveness (/live answers while the process does, whatever Kafka or the database do); compose
# asks /health (readiness) itself. urlopen raises on an error status, so the exit code is 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTHCHECK_PORT', '8001') + '/live', timeout=4)"]

ENTRYPOINT ["safetymon"]
CMD ["serve", "ingest"]
