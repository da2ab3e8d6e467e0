#!/usr/bin/env bash
# Installs (once, cached) the Python that uses a registered model with MLflow's own tools, and
# prints its path:
#   scripts/model-python.sh   -> ~/.cache/seg-mlops/model-py-<versions>/bin/python
# Pinned: mlflow (as scripts/mlflow-server.sh), onnxruntime (the MLmodel's requirements, see
# crates/pipeline/src/train/mlflow_model.rs), lakefs (the official client the plugin is built
# on, as scripts/lakefs-python.sh). The lakefs:// artifact plugin of this repository
# (python/mlflow-lakefs) is reinstalled from the work tree on every call (a few seconds), so the
# venv never holds a stale copy.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../stack/versions.env
. "$(dirname "$0")/../stack/versions.env"
VENV="${MODEL_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops/model-py-mlflow-$MLFLOW_VERSION-ort-$ONNXRUNTIME_VERSION-lakefs-$LAKEFS_PY_VERSION}"
if [ ! -f "$VENV/.complete" ]; then
  echo "model-python: installing mlflow==$MLFLOW_VERSION onnxruntime==$ONNXRUNTIME_VERSION lakefs==$LAKEFS_PY_VERSION into $VENV (one time, ~1-2 minutes)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "mlflow==$MLFLOW_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION" "lakefs==$LAKEFS_PY_VERSION" \
    "setuptools==$SETUPTOOLS_VERSION"
  touch "$VENV/.complete"
fi
scripts/install-lakefs-plugin.sh "$VENV/bin/pip"
echo "$VENV/bin/python"
