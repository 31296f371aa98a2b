# syntax=docker/dockerfile:1
# The jobs image: the feedback aggregator (`minielm feedback aggregate`), the Feast feature server
# (`feast serve`), the drift check (`minielm drift check`) and the hook Jobs (`minielm features apply`,
# `minielm pipeline schedule`); KFP components use it as their base image too. Build from the root:
#   docker build -f docker/jobs.Dockerfile -t ghcr.io/minielm/minielm-jobs:0.1.0 .
FROM python:3.11-slim AS build
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
# An editable install keeps the repository layout under /app: the code finds feature_repo/ and
# pipelines/compiled/ beside its packages.
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY minielm ./minielm
COPY serving ./serving
COPY components ./components
COPY pipelines ./pipelines
COPY feature_repo ./feature_repo
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt -e . \
 && /opt/venv/bin/pip check

FROM python:3.11-slim
RUN groupadd --gid 10001 minielm && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home minielm
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp PYTHONUNBUFFERED=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 \
    MINIELM_CONFIG=/etc/minielm/settings.yaml
WORKDIR /app
USER 10001:10001
HEALTHCHECK NONE
CMD ["minielm", "--help"]
