#!/usr/bin/env bash
# Installs (once, cached) and starts a local MLflow tracking server for the tests and the stack.
#   scripts/mlflow-server.sh start DIR PORT   -> starts it, waits for /health, writes DIR/mlflow.pid
#   scripts/mlflow-server.sh stop DIR         -> stops it by PID (and its children), waits until gone
#   scripts/mlflow-server.sh python           -> prints the venv's python (MLflow's own client)
# With MLFLOW_SERVER_OWNER_PID set, `start` also stops the server when that process exits.
# The store is SQLite in DIR and the artifacts DIR/artifacts, unless SEG_MLFLOW_BACKEND_STORE_URI
# (e.g. postgresql://...) and SEG_MLFLOW_ARTIFACTS_DESTINATION (e.g. s3://mlflow/, with
# MLFLOW_S3_ENDPOINT_URL and AWS_* in the environment) say otherwise (scripts/stack.sh scale).
# The venv lives under ~/.cache/seg-mlops/, keyed by the versions of stack/versions.env: mlflow,
# the PostgreSQL driver and boto3 for S3 artifacts. The server also gets this repository's
# lakefs:// artifact plugin (python/mlflow-lakefs, on the pinned `lakefs` package, reinstalled
# from the work tree at every start), so that it reads model versions whose source is a lakeFS
# folder (the UI's model version page shows their MLmodel signature) with the LAKECTL_*
# credentials of its environment.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../stack/versions.env
. "$REPO_ROOT/stack/versions.env"
# shellcheck source=lib.sh
. "$REPO_ROOT/scripts/lib.sh"
MLFLOW_VENV="${MLFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops/mlflow-$MLFLOW_VERSION-lakefs-$LAKEFS_PY_VERSION-psycopg2-$PSYCOPG2_VERSION-boto3-$BOTO3_VERSION}"

install() {
  pinned_venv "$MLFLOW_VENV" mlflow-server "~1 minute" "mlflow==$MLFLOW_VERSION" \
    "lakefs==$LAKEFS_PY_VERSION" "setuptools==$SETUPTOOLS_VERSION" \
    "psycopg2-binary==$PSYCOPG2_VERSION" "boto3==$BOTO3_VERSION"
}


case "${1:-}" in
  start)
    dir="${2:?usage: mlflow-server.sh start DIR PORT}"
    port="${3:?usage: mlflow-server.sh start DIR PORT}"
    install
    "$REPO_ROOT/scripts/install-lakefs-plugin.sh" "$MLFLOW_VENV/bin/pip"
    mkdir -p "$dir/artifacts"
    # Without MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false it starts ~9 processes and 2.3 GB RSS.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false spawn "$dir/mlflow.pid" "$dir/mlflow.log" \
      "$MLFLOW_VENV/bin/mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
      --backend-store-uri "${SEG_MLFLOW_BACKEND_STORE_URI:-sqlite:///$dir/mlflow.db}" \
      --artifacts-destination "${SEG_MLFLOW_ARTIFACTS_DESTINATION:-$dir/artifacts}"
    server_pid="$(cat "$dir/mlflow.pid")"
    if [ -n "${MLFLOW_SERVER_OWNER_PID:-}" ]; then
      # Started for a test process: stop the server when that process ends.
      # shellcheck disable=SC2016 # expanded by the watcher's bash
      nohup bash -c '. "$1"; wait_until 0 gone "$2"; stop_process "$3"' mlflow-server-watch \
        "$REPO_ROOT/scripts/lib.sh" "$MLFLOW_SERVER_OWNER_PID" "$server_pid" >/dev/null 2>&1 &
    fi
    # A new PostgreSQL store runs MLflow's migrations first (~20 s on 2 cores).
    code=0
    wait_until --pid "$server_pid" 120 mlflow_healthy "http://127.0.0.1:$port" || code=$?
    case "$code" in
      0)
        echo "mlflow-server: MLflow $MLFLOW_VERSION ready at http://127.0.0.1:$port (pid $server_pid)" >&2
        ;;
      2)
        echo "mlflow-server: MLflow exited; its log:" >&2
        tail -n 40 "$dir/mlflow.log" >&2
        exit 1
        ;;
      *)
        echo "mlflow-server: MLflow did not answer /health within 120 s; log: $dir/mlflow.log" >&2
        exit 1
        ;;
    esac
    ;;
  stop)
    stop_pid "${2:?usage: mlflow-server.sh stop DIR}/mlflow.pid"
    ;;
  python)
    install
    echo "$MLFLOW_VENV/bin/python"
    ;;
  *)
    echo "usage: mlflow-server.sh start DIR PORT | stop DIR | python" >&2
    exit 2
    ;;
esac
