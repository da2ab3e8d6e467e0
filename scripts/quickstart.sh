#!/usr/bin/env bash
# seg-mlops quickstart: from a fresh clone to a trained, registered model and predicted masks,
# with the lineage (data commit -> run -> model version -> predictions) in MLflow and lakeFS.
#
#   scripts/quickstart.sh            start the services (unless they answer), then
#                                    train -> register_model -> infer
#   scripts/quickstart.sh --stack lakefs|scale
#                                    the same path on the real engines, started natively by
#                                    scripts/stack.sh (lakeFS itself; scale: on PostgreSQL and S3)
#   scripts/quickstart.sh --status   what runs where
#   scripts/quickstart.sh --stop     stop exactly what the quickstart started (PID files)
#
# Services: lakeFS on :8003 and MLflow on :5000 (the ports of configs/default.toml). Already
# answering: reused. Otherwise, with a Docker engine: `docker compose --profile local-lakefs up
# -d --wait`; without one: the workspace's lakefs-local and MLflow (stack/versions.env) from a cached venv,
# in the background, with PID files and logs in the state folder (.seg-mlops/).
# Data: --data-dir DIR, else ../shared/datasets/kvasir-seg when present, else a seeded
# synthetic set. Rerunnable: services are reused and unchanged data is not uploaded again.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../stack/versions.env
. stack/versions.env
# shellcheck source=lib.sh
. scripts/lib.sh

usage() {
  cat <<'EOF'
usage: scripts/quickstart.sh [--data-dir DIR] [--epochs N] [--image-size N]
                             [--mlflow-port N] [--lakefs-port N] [--state-dir DIR]
                             [--stack lakefs|scale]
       scripts/quickstart.sh --status | --stop [--state-dir DIR]

  --data-dir DIR     dataset folder with images/ and masks/ (default: ../shared/datasets/kvasir-seg
                     when present, else a seeded synthetic set)
  --epochs N         training epochs (default 3)
  --image-size N     training side in pixels, a multiple of 8 (default 64)
  --mlflow-port N    MLflow port (default 5000, configs/default.toml)
  --lakefs-port N    lakeFS port (default 8003, configs/default.toml)
  --state-dir DIR    PID files, logs, service data, cache (default .seg-mlops)
  --stack PROFILE    run on the real engines instead of lakefs-local: lakefs (lakeFS itself)
                     or scale (lakeFS and MLflow on PostgreSQL + S3), started by
                     scripts/stack.sh on free ports in STATE/stack (needs Go; see README)
  --status           say what runs where
  --stop             stop what the quickstart started (by PID file) and nothing else
EOF
}

STATE=".seg-mlops"
MLFLOW_PORT=5000
LAKEFS_PORT=8003
DATA_DIR=""
EPOCHS=3
IMAGE_SIZE=64
ACTION=run
STACK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR="${2:?--data-dir needs a folder}"; shift 2 ;;
    --epochs) EPOCHS="${2:?--epochs needs a number}"; shift 2 ;;
    --image-size) IMAGE_SIZE="${2:?--image-size needs a number}"; shift 2 ;;
    --mlflow-port) MLFLOW_PORT="${2:?--mlflow-port needs a number}"; shift 2 ;;
    --lakefs-port) LAKEFS_PORT="${2:?--lakefs-port needs a number}"; shift 2 ;;
    --state-dir) STATE="${2:?--state-dir needs a folder}"; shift 2 ;;
    --stack) STACK="${2:?--stack needs a profile: lakefs or scale}"; shift 2 ;;
    --status) ACTION=status; shift ;;
    --stop) ACTION=stop; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quickstart: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$STACK" in
  "" | lakefs | scale) ;;
  *) echo "quickstart: unknown --stack $STACK: choose lakefs or scale (see --help)" >&2; exit 2 ;;
esac
for n in "$MLFLOW_PORT" "$LAKEFS_PORT" "$EPOCHS" "$IMAGE_SIZE"; do
  case "$n" in ''|*[!0-9]*) echo "quickstart: $n is not a number (see --help)" >&2; exit 2 ;; esac
done
if ! command -v python3 >/dev/null; then
  echo "quickstart: python3 (with venv) is needed for MLflow: install it (Debian: apt-get install python3-venv)" >&2
  exit 1
fi

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
LAKEFS_URL="http://127.0.0.1:$LAKEFS_PORT"
MLFLOW_URL="http://127.0.0.1:$MLFLOW_PORT"
MLFLOW_UI="http://localhost:$MLFLOW_PORT"
LAKEFS_PID="$STATE/lakefs.pid"
MLFLOW_DIR="$STATE/mlflow"
COMPOSE_MARK="$STATE/compose.started"
STACK_DIR="$STATE/stack"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug"

say() { printf '%s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# --- the services ------------------------------------------------------------------------------
# Starting, waiting for and stopping them is scripts/lib.sh's (lakefs-local, wait_until,
# stop_pid), scripts/mlflow-server.sh's (MLflow) and scripts/stack.sh's (--stack); here is the
# quickstart's choice among them and what it tells the user.
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}
docker_engine() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
    { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; }
}

status_of() { # name url healthy-check pidfile
  local name="$1" url="$2" healthy="$3" pidfile="$4"
  if alive "$pidfile"; then
    if "$healthy" "$url"; then
      say "$name  $url  running (pid $(cat "$pidfile"), started by the quickstart; log in $STATE)"
    else
      say "$name  $url  starting or unhealthy (pid $(cat "$pidfile"), started by the quickstart; log in $STATE)"
    fi
  elif "$healthy" "$url"; then
    if [ -f "$COMPOSE_MARK" ]; then
      say "$name  $url  running (docker compose --profile local-lakefs, started by the quickstart)"
    else
      say "$name  $url  running (not started by the quickstart)"
    fi
  else
    say "$name  $url  not running"
  fi
}

show_status() {
  if [ -f "$STACK_DIR/profile" ]; then
    scripts/stack.sh status --dir "$STACK_DIR"
    return
  fi
  status_of "lakeFS" "$LAKEFS_URL" lakefs_healthy "$LAKEFS_PID"
  status_of "MLflow" "$MLFLOW_URL" mlflow_healthy "$MLFLOW_DIR/mlflow.pid"
}

# Exactly what the quickstart started: the --stack engines, the PID files, the compose profile.
stop_services() {
  [ ! -d "$STACK_DIR" ] || scripts/stack.sh down --dir "$STACK_DIR"
  stop_pid "$LAKEFS_PID" "lakefs-local"
  stop_pid "$MLFLOW_DIR/mlflow.pid" "MLflow"
  if [ -f "$COMPOSE_MARK" ]; then
    compose --profile local-lakefs stop
    rm -f "$COMPOSE_MARK"
    say "stopped docker compose --profile local-lakefs (volumes kept)"
  fi
  say "nothing else was started by the quickstart"
}

# Before anything starts: a port held by something else than the expected service stops here.
preflight() { # name port healthy-check flag
  if ! "$3" "http://127.0.0.1:$2" && listening "$2"; then
    die "port $2 is taken by something that is not $1: stop it, or choose another port with $4 N"
  fi
}

# lakeFS and MLflow: reused when they answer; else docker compose when there is a Docker engine
# (started once for both, by start_services); else lakefs-local and the pinned MLflow.
use_compose=""
start_lakefs() {
  if lakefs_healthy "$LAKEFS_URL"; then
    if alive "$LAKEFS_PID"; then
      say "lakeFS: reusing lakefs-local at $LAKEFS_URL (pid $(cat "$LAKEFS_PID"), started by the quickstart)"
    else
      say "lakeFS: reusing the lakeFS that answers at $LAKEFS_URL"
    fi
    return
  fi
  if docker_engine; then
    use_compose=1
    return
  fi
  if start_lakefs_local 20 "$BIN/lakefs-local" "$STATE/lakefs" "$LAKEFS_PORT" "$LAKEFS_PID" "$STATE/lakefs.log"; then
    say "lakeFS: started lakefs-local at $LAKEFS_URL (pid $(cat "$LAKEFS_PID"), data $STATE/lakefs, log $STATE/lakefs.log)"
    return
  fi
  tail -n 20 "$STATE/lakefs.log" >&2 || true
  die "lakefs-local did not start (log above: $STATE/lakefs.log)"
}
start_mlflow() {
  if mlflow_healthy "$MLFLOW_URL"; then
    if alive "$MLFLOW_DIR/mlflow.pid"; then
      say "MLflow: reusing MLflow at $MLFLOW_URL (pid $(cat "$MLFLOW_DIR/mlflow.pid"), started by the quickstart)"
    else
      say "MLflow: reusing the MLflow that answers at $MLFLOW_URL"
    fi
    return
  fi
  if docker_engine; then
    use_compose=1
    return
  fi
  # The server reads lakefs:// model folders (the UI's model version page) with these.
  LAKECTL_SERVER_ENDPOINT_URL="http://localhost:$LAKEFS_PORT" \
    LAKECTL_CREDENTIALS_ACCESS_KEY_ID="${LAKECTL_CREDENTIALS_ACCESS_KEY_ID:-$LAKEFS_SAMPLE_ACCESS_KEY_ID}" \
    LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY="${LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY:-$LAKEFS_SAMPLE_SECRET_ACCESS_KEY}" \
    scripts/mlflow-server.sh start "$MLFLOW_DIR" "$MLFLOW_PORT"
  say "MLflow: started MLflow $MLFLOW_VERSION at $MLFLOW_URL (pid $(cat "$MLFLOW_DIR/mlflow.pid"), store $MLFLOW_DIR, log $MLFLOW_DIR/mlflow.log)"
}
start_compose() {
  if [ "$LAKEFS_PORT" != 8003 ] || [ "$MLFLOW_PORT" != 5000 ]; then
    die "docker-compose.yml serves lakeFS on 8003 and MLflow on 5000; with other ports, start your own services there first"
  fi
  say "starting lakeFS and MLflow with docker compose --profile local-lakefs (healthchecks awaited)"
  compose --profile local-lakefs up -d --wait
  touch "$COMPOSE_MARK"
}
# The real engines (--stack): started by scripts/stack.sh, or reused when it already runs them.
start_stack() {
  if [ -f "$STACK_DIR/exports.sh" ] && [ "$(cat "$STACK_DIR/profile" 2>/dev/null)" = "$STACK" ] &&
    grep -q "lakefs  running" <<<"$(scripts/stack.sh status --dir "$STACK_DIR")"; then
    say "stack: reusing the $STACK stack of $STACK_DIR"
  else
    scripts/stack.sh up "$STACK" --dir "$STACK_DIR" >/dev/null
  fi
  eval "$(scripts/stack.sh env --dir "$STACK_DIR")"
  LAKEFS_PORT="${LAKECTL_SERVER_ENDPOINT_URL##*:}"
  MLFLOW_PORT="${MLFLOW_TRACKING_URI##*:}"
  LAKEFS_URL="$LAKECTL_SERVER_ENDPOINT_URL"
  MLFLOW_URL="$MLFLOW_TRACKING_URI"
  MLFLOW_UI="http://localhost:$MLFLOW_PORT"
  scripts/stack.sh status --dir "$STACK_DIR"
}
start_services() {
  if [ -n "$STACK" ]; then
    start_stack
  else
    start_lakefs
    start_mlflow
  fi
  [ -z "$use_compose" ] || start_compose
}

# The binaries read these (configs/default.toml has the default ports and the sample keys).
point_the_binaries_at_the_services() {
  export MLFLOW_TRACKING_URI="$MLFLOW_UI"
  export LAKECTL_SERVER_ENDPOINT_URL="http://localhost:$LAKEFS_PORT"
  if [ "$STATE" != "$PWD/.seg-mlops" ]; then
    # A state folder of its own keeps everything in it (the tests use this).
    export SEG_PATHS__CACHE_DIR="$STATE/cache" SEG_PATHS__MODELS_DIR="$STATE/models"
    export SEG_INFER__OUTPUT_DIR="$STATE/predictions"
  fi
}

# --- the steps ---------------------------------------------------------------------------------
case "$ACTION" in
  status) show_status; exit 0 ;;
  stop) stop_services; exit 0 ;;
esac

if [ -z "$STACK" ]; then
  preflight lakeFS "$LAKEFS_PORT" lakefs_healthy --lakefs-port
  preflight MLflow "$MLFLOW_PORT" mlflow_healthy --mlflow-port
fi

START=$(date +%s)
step "build the binaries (debug profile with optimised dependencies; the first build takes ~20 min on 2 cores)"
cargo build --locked --bins

step "services"
start_services
point_the_binaries_at_the_services
OUT="$STATE/last"
mkdir -p "$OUT"

data_args=()
if [ -n "$DATA_DIR" ]; then
  data_args=(--data-dir "$DATA_DIR")
elif [ -d ../shared/datasets/kvasir-seg/images ]; then
  DATA_DIR="../shared/datasets/kvasir-seg"
  data_args=(--data-dir "$DATA_DIR")
fi
step "train (${DATA_DIR:-synthetic data}, $EPOCHS epochs at ${IMAGE_SIZE}x$IMAGE_SIZE on flex)"
"$BIN/train" "${data_args[@]}" --epochs "$EPOCHS" --image-size "$IMAGE_SIZE" --json >"$OUT/train.json"
RUN_ID="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$OUT/train.json")"

step "register_model (run $RUN_ID)"
code=0
"$BIN/register_model" --run-id "$RUN_ID" --json >"$OUT/register.json" 2>"$OUT/register.err" || code=$?
cat "$OUT/register.err" >&2
# Exit 3: the promotion criteria are not met (any other code is an error).
if [ "$code" = 3 ]; then
  say "the quickstart's short training did not meet register.criteria: registering it with --force (tagged forced=true) so that infer can run; train longer for a model that passes"
  "$BIN/register_model" --run-id "$RUN_ID" --force --json >"$OUT/register.json"
elif [ "$code" != 0 ]; then
  exit 1
fi
VERSION="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$OUT/register.json")"

step "infer (version $VERSION on the images of its training data commit; masks, overlays, committed to lakeFS)"
"$BIN/infer" --version "$VERSION" --overlay --overwrite --commit --json >"$OUT/infer.jsonl"

step "done in $(( $(date +%s) - START )) s: the lineage"
python3 - "$OUT" "$MLFLOW_UI" "$LAKEFS_PORT" "$STATE" <<'EOF'
import json, sys, urllib.parse
out, ui, lakefs_port, state = sys.argv[1:5]
t = json.load(open(f"{out}/train.json"))
r = json.load(open(f"{out}/register.json"))
lines = [json.loads(l) for l in open(f"{out}/infer.jsonl") if l.strip()]
s = lines[-1]
repo = t["model_uri"].split("/")[2]
m = t["metrics"]
data = "new commit" if t["new_data_commit"] else "unchanged"
print(f"data commit     lakefs://{repo}/{t['data_commit']}/data/  ({data}, {t['data_files_uploaded']} files uploaded)")
print(f"training run    {t['run_url']}")
print(f"                iou {m.get('iou', 0):.4f}  dice {m.get('dice', 0):.4f}  accuracy {m.get('accuracy', 0):.4f}  ({t['epochs_run']} epochs, {t['timings']['total']:.0f} s)")
name = urllib.parse.quote(r["model_name"])
forced = "  (registered with --force)" if r["forced"] else ""
print(f"model version   {r['model_name']} v{r['version']} (alias {r['alias']}): {ui}/#/models/{name}/versions/{r['version']}{forced}")
print(f"model commit    {r['source']}  sha256 {r['model_sha256'][:16]}...")
print(f"predictions     {s['images']} masks in {s['output_dir']} (overlays in {s['output_dir']}/overlays)")
if s.get("metrics"):
    x = s["metrics"]
    print(f"                against the ground truth: iou {x['iou']:.4f}  dice {x['dice']:.4f}  pixel accuracy {x['pixel_accuracy']:.4f}")
print(f"                {s['predictions_uri']}")
print(f"inference run   {s['inference_run_url']}")
print()
print(f"MLflow UI: {ui}   lakeFS API: http://localhost:{lakefs_port}/api/v1   state: {state}")
EOF

# How to go on by hand, with the flags that reach this state folder and these services.
STATE_ARG=""
[ "$STATE" = "$PWD/.seg-mlops" ] || STATE_ARG=" --state-dir $STATE"
env_note=""
if [ -n "$STACK" ]; then
  STATE_ARG="$STATE_ARG --stack $STACK"
  env_note="  eval \"\$(scripts/stack.sh env --dir $STACK_DIR)\""
else
  [ "$LAKEFS_PORT" = 8003 ] || STATE_ARG="$STATE_ARG --lakefs-port $LAKEFS_PORT"
  [ "$MLFLOW_PORT" = 5000 ] || STATE_ARG="$STATE_ARG --mlflow-port $MLFLOW_PORT"
  if [ "$LAKEFS_PORT" != 8003 ] || [ "$MLFLOW_PORT" != 5000 ] || [ "$STATE" != "$PWD/.seg-mlops" ]; then
    env_note="  export MLFLOW_TRACKING_URI=$MLFLOW_UI LAKECTL_SERVER_ENDPOINT_URL=http://localhost:$LAKEFS_PORT"
  fi
fi
printf '\nBy hand (the services keep running; the default config reaches them):\n'
[ -z "$env_note" ] || printf '%s\n' "$env_note"
cat <<EOF
  cargo run -p train -- ${DATA_DIR:+--data-dir $DATA_DIR }--epochs $EPOCHS --image-size $IMAGE_SIZE
  cargo run -p register_model
  cargo run -p infer -- --overlay
  scripts/quickstart.sh --status${STATE_ARG:-}
  scripts/quickstart.sh --stop${STATE_ARG:-}
EOF
