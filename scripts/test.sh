#!/usr/bin/env bash
# The project's one test command (README and .ci/run call it). From a fresh clone it installs
# what the tests need, then runs every test of the workspace:
#   1. rustfmt and clippy (warnings are errors);
#   2. starts MLflow (pip, pinned, cached under ~/.cache) on a free loopback port, and installs
#      lakeFS's official Python clients (pinned, cached) that judge lakefs-local, and MLflow's
#      model tools with onnxruntime and this repository's lakefs:// plugin (python/mlflow-lakefs);
#   3. the workspace's binaries, then all its tests on the default backend (flex, pure Rust),
#      the end-to-end tests of tests/ included (they run the binaries against lakefs-local and
#      MLflow);
#   4. the quickstart itself (tests/quickstart.sh: clean state folder, free ports, tiny
#      settings, rerun, --status, --stop) and both docker-compose profiles (`docker-compose
#      config -q`; Debian's docker-compose is installed when absent, no engine needed);
#   5. the lakeFS conformance suite against a real lakeFS when LAKEFS_TEST_ENDPOINT is set
#      (one line says it was not run otherwise);
#   6. seg-model's tests again on libtorch (burn's tch backend), so the backend users asked
#      for cannot rot, with clippy over the tch builds of seg-model, pipeline and the three binaries. libtorch comes from the torch==2.9.0
#      wheel, cached under ~/.cache.
# Needs: the Rust toolchain, python3 with venv, ../shared/datasets (or SEG_DATASETS_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export SEG_DATASETS_DIR="${SEG_DATASETS_DIR:-$(cd .. && pwd)/shared/datasets}"
if [ ! -d "$SEG_DATASETS_DIR/kvasir-seg" ]; then
  echo "test.sh: datasets not found at $SEG_DATASETS_DIR; set SEG_DATASETS_DIR to the folder with kvasir-seg/" >&2
  exit 1
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt and clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "services: MLflow (pinned, cached venv) on loopback"
SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/seg-mlops-test.XXXXXX")"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cleanup() { scripts/mlflow-server.sh stop "$SERVICES_DIR/mlflow" || true; }
trap cleanup EXIT
MLFLOW_PORT="$(free_port)"
scripts/mlflow-server.sh start "$SERVICES_DIR/mlflow" "$MLFLOW_PORT"
export MLFLOW_TEST_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"
MLFLOW_TEST_PYTHON="$(scripts/mlflow-server.sh python)"
export MLFLOW_TEST_PYTHON

step "lakeFS's official Python clients (pinned, cached venv)"
LAKEFS_TEST_PYTHON="$(scripts/lakefs-python.sh)"
export LAKEFS_TEST_PYTHON

step "MLflow's own model tools: mlflow, onnxruntime, lakefs and the lakefs:// plugin (pinned, cached venv)"
MODEL_TEST_PYTHON="$(scripts/model-python.sh)"
export MODEL_TEST_PYTHON

step "workspace binaries and tests (flex backend)"
# The end-to-end tests (tests/) run the binaries as processes: build them first.
cargo build --workspace --bins --locked
export SEG_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug"
cargo test --workspace --locked

step "the quickstart, from a clean state folder on free ports (tests/quickstart.sh)"
tests/quickstart.sh

step "docker-compose.yml: both profiles validated with docker-compose config (no engine needed)"
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing Debian's docker-compose (validates compose files without a Docker engine)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null ||
    { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose >/dev/null; }
fi
for profile in local-lakefs scale; do
  docker-compose --profile "$profile" config -q
  echo "docker-compose.yml profile $profile: valid (containers not started: no Docker engine here)"
done

step "conformance suite against a real lakeFS"
if [ -n "${LAKEFS_TEST_ENDPOINT:-}" ]; then
  cargo test -p lakefs-client --locked --features real-lakefs-tests --test real_lakefs
else
  echo "real lakeFS conformance: NOT RUN (set LAKEFS_TEST_ENDPOINT, LAKEFS_TEST_ACCESS_KEY_ID, LAKEFS_TEST_SECRET_ACCESS_KEY to run it; lakefs-local ran the same suite above)"
fi

step "libtorch (tch backend): clippy over seg-model, pipeline and the three binaries built with tch, then seg-model's tests"
scripts/with-libtorch.sh cargo clippy -p seg-model -p pipeline -p train -p register_model -p infer --all-targets --locked --no-default-features --features tch -- -D warnings
scripts/with-libtorch.sh cargo test -p seg-model --locked --no-default-features --features tch
