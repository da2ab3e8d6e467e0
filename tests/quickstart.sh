#!/usr/bin/env bash
# The quickstart's own test (scripts/test.sh runs it): from a clean state folder, on free ports,
# on 48 real kvasir-seg pairs with tiny settings, it must start both services itself, train,
# register and infer, and print the lineage; a second run must reuse the services and upload
# nothing; --status must see both; --stop must leave no process behind and free both ports.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../stack/versions.env
. stack/versions.env
# shellcheck source=../scripts/lib.sh
. scripts/lib.sh
# shellcheck source=lib/kvasir.sh
. tests/lib/kvasir.sh
fail() { printf 'quickstart test: FAILED: %s\n' "$*" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/seg-quickstart-test.XXXXXX")"
STATE="$WORK/state"
LAKEFS_PORT="$(free_port)"
MLFLOW_PORT="$(free_port)"
ARGS=(--state-dir "$STATE" --lakefs-port "$LAKEFS_PORT" --mlflow-port "$MLFLOW_PORT")
cleanup() { scripts/quickstart.sh --stop "${ARGS[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT

copy_kvasir_pairs 48 "$WORK/data" || fail "no kvasir-seg data"

run_quickstart() { # log
  if ! scripts/quickstart.sh "${ARGS[@]}" --data-dir "$WORK/data" --epochs 1 --image-size 32 >"$1" 2>&1; then
    tail -n 40 "$1" >&2
    fail "scripts/quickstart.sh exited non-zero (log: $1)"
  fi
}
expect() { # log pattern what
  grep -qE "$2" "$1" || { tail -n 40 "$1" >&2; fail "$3: no line matching /$2/ in $1"; }
}

echo "quickstart test: first run (state $STATE, lakeFS :$LAKEFS_PORT, MLflow :$MLFLOW_PORT)"
run_quickstart "$WORK/first.log"
expect "$WORK/first.log" "lakeFS: started lakefs-local at http://127.0.0.1:$LAKEFS_PORT" "lakefs-local started by the quickstart"
expect "$WORK/first.log" "MLflow: started MLflow $MLFLOW_VERSION at http://127.0.0.1:$MLFLOW_PORT" "MLflow started by the quickstart"
expect "$WORK/first.log" "^data commit +lakefs://image-segmentation-local-repo/[0-9a-f]{64}/data/ +\(new commit, 96 files uploaded\)" "data committed"
expect "$WORK/first.log" "^training run +http://localhost:$MLFLOW_PORT/#/experiments/[0-9]+/runs/[0-9a-f]{32}" "run URL"
expect "$WORK/first.log" "^model version +image_segmentation_model v1 \(alias champion\): http://localhost:$MLFLOW_PORT/#/models/image_segmentation_model/versions/1" "model version URL"
expect "$WORK/first.log" "^model commit +lakefs://image-segmentation-local-repo/[0-9a-f]{64}/models/" "immutable model URI"
expect "$WORK/first.log" "^predictions +48 masks in $STATE/predictions" "48 masks"
expect "$WORK/first.log" "against the ground truth: iou [0-9.]+" "metrics against the masks"
expect "$WORK/first.log" "lakefs://image-segmentation-local-repo/[0-9a-f]{64}/predictions/image-segmentation-model-v1/" "predictions committed"
expect "$WORK/first.log" "cargo run -p infer -- --overlay" "the commands by hand"
masks=$(find "$STATE/predictions" -path "$STATE/predictions/overlays" -prune -o -name '*.png' -print | wc -l)
[ "$masks" = 48 ] || fail "expected 48 masks under $STATE/predictions, found $masks"
{ [ -f "$STATE/lakefs.pid" ] && [ -f "$STATE/mlflow/mlflow.pid" ]; } || fail "no PID files in $STATE"
LAKEFS_PID="$(cat "$STATE/lakefs.pid")"
MLFLOW_PID="$(cat "$STATE/mlflow/mlflow.pid")"
MLFLOW_CHILDREN="$(pgrep -P "$MLFLOW_PID" || true)"

echo "quickstart test: second run (services reused, nothing uploaded)"
run_quickstart "$WORK/second.log"
expect "$WORK/second.log" "lakeFS: reusing lakefs-local at http://127.0.0.1:$LAKEFS_PORT \(pid $LAKEFS_PID" "lakeFS reused"
expect "$WORK/second.log" "MLflow: reusing MLflow at http://127.0.0.1:$MLFLOW_PORT \(pid $MLFLOW_PID" "MLflow reused"
expect "$WORK/second.log" "^data commit .*\(unchanged, 0 files uploaded\)" "unchanged data not uploaded"
expect "$WORK/second.log" "^model version +image_segmentation_model v2 " "a second version"

scripts/quickstart.sh --status "${ARGS[@]}" >"$WORK/status.log"
expect "$WORK/status.log" "^lakeFS .* running \(pid $LAKEFS_PID, started by the quickstart" "--status sees lakeFS"
expect "$WORK/status.log" "^MLflow .* running \(pid $MLFLOW_PID, started by the quickstart" "--status sees MLflow"

echo "quickstart test: --stop"
scripts/quickstart.sh --stop "${ARGS[@]}" >"$WORK/stop.log"
for pid in $LAKEFS_PID $MLFLOW_PID $MLFLOW_CHILDREN; do
  if kill -0 "$pid" 2>/dev/null; then fail "process $pid is still running after --stop"; fi
done
for port in $LAKEFS_PORT $MLFLOW_PORT; do
  if listening "$port"; then fail "port $port still answers after --stop"; fi
done
scripts/quickstart.sh --status "${ARGS[@]}" >"$WORK/status.log"
expect "$WORK/status.log" "^lakeFS .* not running" "--status after --stop"
echo "quickstart test: a port held by another program"
python3 -c 'import socket, time; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(120)' >"$WORK/busy.port" &
BUSY_PID=$!
wait_until 5 test -s "$WORK/busy.port" || true
BUSY="$(cat "$WORK/busy.port")"
if scripts/quickstart.sh --state-dir "$WORK/busy" --lakefs-port "$LAKEFS_PORT" --mlflow-port "$BUSY" >"$WORK/busy.log" 2>&1; then
  stop_process "$BUSY_PID"; fail "the quickstart ran although port $BUSY was taken"
fi
stop_process "$BUSY_PID"
expect "$WORK/busy.log" "port $BUSY is taken by something that is not MLflow: stop it, or choose another port with --mlflow-port N" "one line naming the port and the flag"
[ "$(grep -c '^quickstart:' "$WORK/busy.log")" = 1 ] || fail "more than one error line: $(cat "$WORK/busy.log")"
if listening "$LAKEFS_PORT"; then fail "lakeFS was started although the quickstart stopped"; fi

trap - EXIT
rm -rf "$WORK"
echo "quickstart test: passed (first run, rerun reusing services with no upload, --status, --stop)"
