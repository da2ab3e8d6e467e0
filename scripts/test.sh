#!/usr/bin/env bash
# The project's one test command (README and .ci/run call it). From a fresh clone it installs
# what the tests need, then runs every test of the workspace:
#   1. rustfmt and clippy (warnings are errors; the real-engine tests' features included);
#   2. starts MLflow (pip, pinned, cached under ~/.cache) on a free loopback port, and installs
#      lakeFS's official Python clients (pinned, cached) that judge lakefs-local, and MLflow's
#      model tools with onnxruntime and this repository's lakefs:// plugin (python/mlflow-lakefs);
#   3. the workspace's binaries, then all its tests on the default backend (flex, pure Rust),
#      the end-to-end tests of tests/ included (they run the binaries against lakefs-local and
#      MLflow);
#   4. the quickstart itself (tests/quickstart.sh: clean state folder, free ports, tiny
#      settings, rerun, --status, --stop); docker-compose.yml's profiles validated with
#      `docker-compose config -q` (Debian's docker-compose, no engine needed) and its versions
#      checked against stack/versions.env;
#   5. the real engines, natively (scripts/stack.sh; lakeFS and versitygw built once from
#      stack/go.mod with Go, cached under ~/.cache; PostgreSQL from Debian):
#      on lakeFS itself (profile lakefs): the lakeFS client's conformance suite, the differential
#      test of lakefs-local against lakeFS, lakeFS's official Python clients, and the end-to-end
#      tests that carry the lineage (train -> register -> infer --commit, concurrent trains, the
#      fault proxy, MLflow's own loaders through the lakefs:// plugin);
#      on the profile scale (lakeFS on PostgreSQL + S3 on versitygw, MLflow on PostgreSQL + S3):
#      the conformance suite and the quickstart, read back with MLflow's and lakeFS's own clients;
#   6. seg-model's tests again on libtorch (burn's tch backend), so the backend users asked
#      for cannot rot, with clippy over the tch builds of seg-kernels, seg-model, pipeline and the three binaries. libtorch comes from the torch
#      wheel of stack/versions.env, cached under ~/.cache.
# Needs: the Rust toolchain, Go (stack/go.mod names the version), python3 with venv,
# ../shared/datasets (or SEG_DATASETS_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export SEG_DATASETS_DIR="${SEG_DATASETS_DIR:-$(cd .. && pwd)/shared/datasets}"
if [ ! -d "$SEG_DATASETS_DIR/kvasir-seg" ]; then
  echo "test.sh: datasets not found at $SEG_DATASETS_DIR; set SEG_DATASETS_DIR to the folder with kvasir-seg/" >&2
  exit 1
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# shellcheck source=lib.sh
. scripts/lib.sh

# A full disk fails wherever it strikes (a link, a test's temporary folder): say up front how
# much room there is, for the reader of a failed log.
echo "test.sh: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free on the disk of $PWD; ~/.cache/seg-mlops holds $(du -sh "$HOME/.cache/seg-mlops" 2>/dev/null | cut -f1 || echo nothing)"

step "rustfmt and clippy"
cargo fmt --all --check
REAL_ENGINE_FEATURES="lakefs-client/real-lakefs-tests,lakefs-local/real-lakefs-tests"
cargo clippy --workspace --all-targets --locked --features "$REAL_ENGINE_FEATURES" -- -D warnings

step "services: MLflow (pinned, cached venv) on loopback"
SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/seg-mlops-test.XXXXXX")"
cleanup() {
  scripts/mlflow-server.sh stop "$SERVICES_DIR/mlflow" || true
  for stack in "$SERVICES_DIR"/stack-*; do
    [ ! -d "$stack" ] || scripts/stack.sh down --dir "$stack" >/dev/null 2>&1 || true
  done
}
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

step "docker-compose.yml: both profiles validated with docker-compose config (no engine needed), versions against stack/versions.env"
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing Debian's docker-compose (validates compose files without a Docker engine)"
  apt_install docker-compose >/dev/null
fi
for profile in local-lakefs scale; do
  docker-compose --profile "$profile" config -q
  echo "docker-compose.yml profile $profile: valid (containers not started: no Docker engine here)"
done
python3 scripts/check-pins.py

step "the real engines: lakeFS and versitygw from stack/go.mod (built once, cached)"
scripts/stack.sh build

# shellcheck source=../tests/lib/real_lakefs.sh
. tests/lib/real_lakefs.sh

step "on lakeFS $(. stack/versions.env && echo "$LAKEFS_VERSION") itself (scripts/stack.sh up lakefs: local KV and blockstore)"
eval "$(scripts/stack.sh up lakefs --dir "$SERVICES_DIR/stack-lakefs")"
# (the stack's own MLflow stays unused: the tests use the MLflow above)
real_lakefs_env local://seg-mlops-tests
cargo test -p lakefs-client --locked --features real-lakefs-tests --test real_lakefs
cargo test -p lakefs-local --locked --features real-lakefs-tests --test differential -- --nocapture
cargo test -p lakefs-local --locked --test official_clients
# The end-to-end tests that carry the lineage, with MLflow as above and lakeFS itself.
cargo test -p e2e --locked --test register --test faults --test python_model --test hostile --test promotion
cargo test -p e2e --locked --test catalogue -- --nocapture
cargo test -p e2e --locked --test infer -- masks_follow_the_lineage_and_every_way_in_agrees
cargo test -p e2e --locked --test lineage -- concurrent_trains_each_record_exactly_their_own_data
scripts/stack.sh down --dir "$SERVICES_DIR/stack-lakefs"
unset LAKEFS_TEST_ENDPOINT LAKEFS_TEST_ACCESS_KEY_ID LAKEFS_TEST_SECRET_ACCESS_KEY LAKEFS_TEST_NAMESPACE
unset LAKECTL_SERVER_ENDPOINT_URL LAKECTL_CREDENTIALS_ACCESS_KEY_ID LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY
unset MLFLOW_TRACKING_URI SEG_LAKEFS__STORAGE_NAMESPACE SEG_STACK_PROFILE SEG_STACK_DIR

step "on the profile scale: the quickstart on PostgreSQL, versitygw, lakeFS on both, MLflow on PostgreSQL + S3 (tests/stack_scale.sh)"
tests/stack_scale.sh

step "libtorch (tch backend): clippy over seg-kernels, seg-model, pipeline and the three binaries built with tch, then their kernels' and seg-model's tests"
scripts/with-libtorch.sh cargo clippy -p seg-kernels -p seg-model -p pipeline -p train -p register_model -p infer --all-targets --locked --no-default-features --features tch -- -D warnings
scripts/with-libtorch.sh cargo test -p seg-kernels -p seg-model --locked --no-default-features --features tch
