#!/usr/bin/env bash
# The production stack end to end (scripts/test.sh runs it): `scripts/quickstart.sh --stack
# scale` from a clean state folder on 24 real kvasir-seg pairs with tiny settings starts
# PostgreSQL, versitygw, lakeFS on both and MLflow on PostgreSQL + S3 (scripts/stack.sh), and
# trains, registers and infers --commit on them; the lakeFS client's conformance suite runs
# against that lakeFS; MLflow's, lakeFS's and boto3's own clients read the lineage back
# (tests/python/stack_readback.py); --stop must leave no engine running.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { printf 'stack test: FAILED: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/seg-stack-test.XXXXXX")"
chmod 755 "$WORK" # PostgreSQL runs as the postgres user and keeps its cluster under it
STATE="$WORK/state"
cleanup() { scripts/quickstart.sh --stop --state-dir "$STATE" >/dev/null 2>&1 || true; }
trap cleanup EXIT

DATASETS="${SEG_DATASETS_DIR:-../shared/datasets}"
mkdir -p "$WORK/data/images" "$WORK/data/masks"
find "$DATASETS/kvasir-seg/images" -type f | sort | sed -n 1,24p | while read -r f; do
  stem="$(basename "${f%.*}")"
  cp "$f" "$WORK/data/images/"
  cp "$DATASETS/kvasir-seg/masks/$stem".* "$WORK/data/masks/"
done

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
LAKEFS_TEST_ENDPOINT="$LAKECTL_SERVER_ENDPOINT_URL" LAKEFS_TEST_ACCESS_KEY_ID="$LAKECTL_CREDENTIALS_ACCESS_KEY_ID" \
  LAKEFS_TEST_SECRET_ACCESS_KEY="$LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY" LAKEFS_TEST_NAMESPACE=s3://lakefs/conformance \
  cargo test -p lakefs-client --locked --features real-lakefs-tests --test real_lakefs

echo "stack test: the lineage read back with MLflow's, lakeFS's and boto3's clients"
"$(scripts/mlflow-server.sh python)" tests/python/stack_readback.py "$STATE/last" | tee "$WORK/readback.json"

scripts/quickstart.sh --stop --state-dir "$STATE" >"$WORK/stop.log" 2>&1 || { cat "$WORK/stop.log" >&2; fail "--stop failed"; }
for engine in lakefs mlflow/mlflow versitygw postgres; do
  [ ! -f "$STATE/stack/$engine.pid" ] || fail "$engine still has a pid file after --stop"
done
for url in "$LAKECTL_SERVER_ENDPOINT_URL" "$MLFLOW_TRACKING_URI" "$MLFLOW_S3_ENDPOINT_URL"; do
  port="${url##*:}"
  if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$port" 2>/dev/null; then
    fail "port $port still answers after --stop"
  fi
done
echo "stack test: ok (quickstart, conformance and read-back on the scale profile; everything stopped)"
