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
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
VENV="${MODEL_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops/model-py-mlflow-$MLFLOW_VERSION-ort-$ONNXRUNTIME_VERSION-lakefs-$LAKEFS_PY_VERSION}"
pinned_venv "$VENV" model-python "~1-2 minutes" \
  "mlflow==$MLFLOW_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION" "lakefs==$LAKEFS_PY_VERSION" \
  "setuptools==$SETUPTOOLS_VERSION"
scripts/install-lakefs-plugin.sh "$VENV/bin/pip"
echo "$VENV/bin/python"
