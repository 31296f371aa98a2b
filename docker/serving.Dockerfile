# syntax=docker/dockerfile:1
# The serving image: `minielm serve` (KServe ModelServer) for the student rewriter and relevance
# models. Build from the repository root:
#   docker build -f docker/serving.Dockerfile -t ghcr.io/minielm/minielm-serving:0.1.0 .
# PIP_EXTRA_INDEX_URL may point pip at an index with the CPU build of torch==2.13.0.
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
EXPOSE 8080
HEALTHCHECK NONE
CMD ["minielm", "serve", "--no-services", "--no-apply-features"]
