#!/usr/bin/env bash
# The production stack end to end (scripts/test.sh runs it): `scripts/quickstart.sh --stack
# scale` from a clean state folder on 24 real kvasir-seg pairs with tiny settings starts
# PostgreSQL, versitygw, lakeFS on both and MLflow on PostgreSQL + S3 (scripts/stack.sh), and
# trains, registers and infers --commit on them; the lakeFS client's conformance suite runs
# against that lakeFS; MLflow's, lakeFS's and boto3's own clients read the lineage back
# (tests/python/stack_readback.py); --stop must leave no engine running. First, an engine that
# cannot start must be named with its log, and `up` must leave nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/lib.sh
. scripts/lib.sh
# shellcheck source=lib/kvasir.sh
. tests/lib/kvasir.sh
# shellcheck source=lib/real_lakefs.sh
. tests/lib/real_lakefs.sh
fail() { printf 'stack test: FAILED: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/seg-stack-test.XXXXXX")"
chmod 755 "$WORK" # PostgreSQL runs as the postgres user and keeps its cluster under it
STATE="$WORK/state"
cleanup() { scripts/quickstart.sh --stop --state-dir "$STATE" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "stack test: an engine that fails to start is named with its log, and nothing is left running"
# shellcheck source=../stack/versions.env
. stack/versions.env
BROKEN="$WORK/broken"
mkdir -p "$BROKEN/lakefs"
echo "not a folder" >"$BROKEN/lakefs/metadata" # lakeFS's local KV cannot open it
if scripts/stack.sh up lakefs --dir "$BROKEN" >"$WORK/broken.out" 2>"$WORK/broken.err"; then
  fail "scripts/stack.sh up lakefs succeeded over a broken metadata folder"
fi
grep -qF "stack: lakeFS $LAKEFS_VERSION did not start (the process exited); its log: $BROKEN/lakefs.log" "$WORK/broken.err" ||
  { cat "$WORK/broken.err" >&2; fail "the failure does not name lakeFS and its log"; }
grep -q "Failed to open KV store" "$WORK/broken.err" || fail "the failure does not show the log's last lines"
[ ! -s "$WORK/broken.out" ] || fail "a failed up printed exports: $(cat "$WORK/broken.out")"
broken_status="$(scripts/stack.sh status --dir "$BROKEN")"
grep -q "lakefs  not running" <<<"$broken_status" || fail "lakeFS left running after a failed up: $broken_status"
if scripts/stack.sh up nonsense --dir "$BROKEN" 2>"$WORK/nonsense.err"; then fail "an unknown profile was accepted"; fi
grep -qF "unknown profile 'nonsense': choose local, lakefs or scale" "$WORK/nonsense.err" || fail "unknown profile: $(cat "$WORK/nonsense.err")"

copy_kvasir_pairs 24 "$WORK/data" || fail "no kvasir-seg data"

echo "stack test: scripts/quickstart.sh --stack scale (state $STATE)"
if ! scripts/quickstart.sh --stack scale --state-dir "$STATE" --data-dir "$WORK/data" \
  --epochs 1 --image-size 32 >"$WORK/quickstart.log" 2>&1; then
  tail -n 60 "$WORK/quickstart.log" >&2
  fail "scripts/quickstart.sh --stack scale exited non-zero (log: $WORK/quickstart.log)"
fi
for pattern in "postgres  running" "versitygw  running" "^data commit +lakefs://image-segmentation-local-repo/[0-9a-f]{64}/data/" \
  "^model version +image_segmentation_model v1 \(alias champion\)" "^predictions +24 masks"; do
  grep -qE "$pattern" "$WORK/quickstart.log" || { tail -n 40 "$WORK/quickstart.log" >&2; fail "no line matching /$pattern/"; }
done

eval "$(scripts/stack.sh env --dir "$STATE/stack")"
echo "stack test: the lakeFS client's conformance suite against lakeFS on PostgreSQL + S3"
(
  real_lakefs_env s3://lakefs/conformance
  cargo test -p lakefs-client --locked --features real-lakefs-tests --test real_lakefs
)

echo "stack test: the lineage read back with MLflow's, lakeFS's and boto3's clients"
"$(scripts/mlflow-server.sh python)" tests/python/stack_readback.py "$STATE/last" | tee "$WORK/readback.json"

scripts/quickstart.sh --stop --state-dir "$STATE" >"$WORK/stop.log" 2>&1 || { cat "$WORK/stop.log" >&2; fail "--stop failed"; }
for engine in lakefs mlflow/mlflow versitygw postgres; do
  [ ! -f "$STATE/stack/$engine.pid" ] || fail "$engine still has a pid file after --stop"
done
for url in "$LAKECTL_SERVER_ENDPOINT_URL" "$MLFLOW_TRACKING_URI" "$MLFLOW_S3_ENDPOINT_URL"; do
  port="${url##*:}"
  if listening "$port"; then
    fail "port $port still answers after --stop"
  fi
done
echo "stack test: ok (quickstart, conformance and read-back on the scale profile; everything stopped)"
