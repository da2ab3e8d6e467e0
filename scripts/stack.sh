#!/usr/bin/env bash
# The engines of seg-mlops, natively (no Docker), with the profiles of docker-compose.yml:
#
#   scripts/stack.sh build                      build lakeFS and versitygw from stack/go.mod
#                                               (once per version, cached), print their paths
#   eval "$(scripts/stack.sh up PROFILE [--dir DIR])"
#                                               start PROFILE on free loopback ports, wait until
#                                               each engine is healthy, print `export` lines
#   scripts/stack.sh env [--dir DIR]            print the `export` lines of a running stack again
#   scripts/stack.sh status [--dir DIR]         say what runs, where, with which pid and log
#   scripts/stack.sh down [--dir DIR]           stop exactly what `up` started (pid files)
#
# Profiles:
#   local    lakefs-local (this workspace's server) + MLflow on SQLite: the quickstart's services
#   lakefs   lakeFS itself (its local KV and local blockstore) + MLflow on SQLite
#   scale    PostgreSQL (a database each for lakeFS and MLflow), versitygw (S3 over a folder),
#            lakeFS on PostgreSQL with its S3 blockstore on versitygw, MLflow on PostgreSQL with
#            s3:// artifacts on versitygw
#
# DIR (default .seg-mlops/stack) holds every engine's data, pid file and log; data survives
# `down`, so a second `up` of the same profile finds it again. Versions come from
# stack/versions.env (stack/go.mod requires the same lakeFS and versitygw). The Go build goes to
# ${XDG_CACHE_HOME:-~/.cache}/seg-mlops/engines/, PostgreSQL comes from Debian's postgresql-N
# (installed with apt-get when absent), MLflow from the pinned venv of scripts/mlflow-server.sh.
# The lakeFS keys are the sample keys of configs/default.toml unless LAKEFS_ACCESS_KEY_ID and
# LAKEFS_SECRET_ACCESS_KEY are set; PostgreSQL's and the S3 gateway's secrets are random, made
# once per DIR. Everything listens on 127.0.0.1 only.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../stack/versions.env
. "$REPO_ROOT/stack/versions.env"
# shellcheck source=lib.sh
. "$REPO_ROOT/scripts/lib.sh"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops"

say() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }
usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- building the Go engines ---------------------------------------------------------------
# Builds one engine (name, package, version, ldflags) into the cache; prints its path. The cache
# is keyed by version and go.sum; a build first checks that stack/go.mod requires the versions
# stack/versions.env pins (scripts/check-pins.py, the test command's check).
build_engine() {
  local name="$1" package="$2" version="$3" ldflags="$4"
  local sum out
  sum="$(sha256sum "$REPO_ROOT/stack/go.sum" | cut -c1-12)"
  out="$CACHE/engines/$name-$version-$sum/$name"
  if [ ! -x "$out" ]; then
    python3 "$REPO_ROOT/scripts/check-pins.py" >/dev/null ||
      die "versions disagree with stack/versions.env (above): make them agree"
    command -v go >/dev/null 2>&1 ||
      die "building $name $version needs Go (stack/go.mod names the version): install it, or use the profile local"
    say "building $name $version from stack/go.mod with $(go version | cut -d' ' -f3) (one time, ~3 min on 2 cores; cached in $(dirname "$out"))"
    mkdir -p "$(dirname "$out")"
    (cd "$REPO_ROOT/stack" && go build -trimpath -ldflags "$ldflags" -o "$out.partial" "$package") ||
      die "go build of $name $version failed (see above)"
    mv "$out.partial" "$out"
  fi
  printf '%s\n' "$out"
}

lakefs_bin() {
  build_engine lakefs github.com/treeverse/lakefs/cmd/lakefs "$LAKEFS_VERSION" \
    "-X github.com/treeverse/lakefs/pkg/version.Version=$LAKEFS_VERSION"
}
versitygw_bin() {
  build_engine versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" \
    "-X main.Version=$VERSITYGW_VERSION"
}

# --- small tools ---------------------------------------------------------------------------
secret() { python3 -c 'import secrets; print(secrets.token_hex(20))'; }

# The engine failed to start: name it, its log, and the log's last lines.
failed() { # engine log why
  {
    printf 'stack: %s did not start (%s); its log: %s\n' "$1" "$3" "$2"
    tail -n 25 "$2" 2>/dev/null | sed 's/^/  | /'
  } >&2
  exit 1
}

# What wait_until (scripts/lib.sh) answered, as the engine's failure: 1 not healthy in time,
# 2 the process exited.
wait_failed() { # engine log seconds code
  case "$4" in
    0) ;;
    2) failed "$1" "$2" "the process exited" ;;
    *) failed "$1" "$2" "not healthy within $3 s" ;;
  esac
}

# Waits until `check` passes (up to `seconds`), failing as soon as the process is gone.
wait_healthy() { # engine pidfile log seconds check...
  local engine="$1" pidfile="$2" log="$3" seconds="$4" code=0
  shift 4
  wait_until --pid "$(cat "$pidfile")" "$seconds" "$@" || code=$?
  wait_failed "$engine" "$log" "$seconds" "$code"
}

# --- the engines ---------------------------------------------------------------------------
start_lakefs_local() {
  say "building lakefs-local (cargo build -p lakefs-local)"
  (cd "$REPO_ROOT" && cargo build --locked --quiet -p lakefs-local --bin lakefs-local) >&2
  local bin="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/lakefs-local"
  local code=0
  LAKEFS_LOCAL_SECRET_ACCESS_KEY="$LAKEFS_SECRET" start_lakefs_local 30 "$bin" "$DIR/lakefs-local" \
    "$LAKEFS_PORT" "$DIR/lakefs.pid" "$DIR/lakefs.log" --access-key-id "$LAKEFS_KEY" || code=$?
  wait_failed lakefs-local "$DIR/lakefs.log" 30 "$code"
}

# lakeFS itself; $1 = local (local KV + blockstore) or scale (PostgreSQL + S3 on versitygw).
start_lakefs() {
  local mode="$1" bin
  bin="$(lakefs_bin)"
  mkdir -p "$DIR/lakefs/cache"
  (
    export LAKEFS_LISTEN_ADDRESS="127.0.0.1:$LAKEFS_PORT"
    export LAKEFS_STATS_ENABLED=false LAKEFS_LOGGING_LEVEL=INFO LAKEFS_SECURITY_CHECK_LATEST_VERSION=false
    export LAKEFS_AUTH_ENCRYPT_SECRET_KEY="$LAKEFS_ENCRYPT_SECRET_KEY"
    export LAKEFS_COMMITTED_LOCAL_CACHE_DIR="$DIR/lakefs/cache"
    export LAKEFS_INSTALLATION_USER_NAME=admin
    export LAKEFS_INSTALLATION_ACCESS_KEY_ID="$LAKEFS_KEY" LAKEFS_INSTALLATION_SECRET_ACCESS_KEY="$LAKEFS_SECRET"
    if [ "$mode" = local ]; then
      export LAKEFS_DATABASE_TYPE=local LAKEFS_BLOCKSTORE_TYPE=local
      export LAKEFS_DATABASE_LOCAL_PATH="$DIR/lakefs/metadata" LAKEFS_BLOCKSTORE_LOCAL_PATH="$DIR/lakefs/blocks"
      spawn "$DIR/lakefs.pid" "$DIR/lakefs.log" "$bin" run --local-settings
    else
      export LAKEFS_DATABASE_TYPE=postgres
      export LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING="postgres://seg:$PG_PASSWORD@127.0.0.1:$PG_PORT/lakefs?sslmode=disable"
      export LAKEFS_BLOCKSTORE_TYPE=s3 LAKEFS_BLOCKSTORE_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
      export LAKEFS_BLOCKSTORE_S3_FORCE_PATH_STYLE=true LAKEFS_BLOCKSTORE_S3_REGION=us-east-1
      export LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID="$S3_KEY" LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY="$S3_SECRET"
      # On PostgreSQL the installation user is made by `lakefs setup` (a no-op once done).
      # (it prints the keys it made: the secret stays out of the log)
      "$bin" setup --user-name admin --access-key-id "$LAKEFS_KEY" --secret-access-key "$LAKEFS_SECRET" 2>&1 |
        sed '/secret_access_key/d' >"$DIR/lakefs-setup.log" ||
        failed "lakeFS $LAKEFS_VERSION (lakefs setup)" "$DIR/lakefs-setup.log" "setup failed"
      spawn "$DIR/lakefs.pid" "$DIR/lakefs.log" "$bin" run
    fi
  )
  wait_healthy "lakeFS $LAKEFS_VERSION" "$DIR/lakefs.pid" "$DIR/lakefs.log" 90 \
    lakefs_healthy "http://127.0.0.1:$LAKEFS_PORT"
  # Healthy before its installation user exists: wait until the keys are accepted.
  wait_healthy "lakeFS $LAKEFS_VERSION (its admin user)" "$DIR/lakefs.pid" "$DIR/lakefs.log" 30 keys_accepted
}

keys_accepted() { # 0 when lakeFS accepts the installation user's keys (a 401 until it exists)
  python3 -c '
import base64, sys, urllib.request
req = urllib.request.Request(sys.argv[1])
req.add_header("Authorization", "Basic " + base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode())
urllib.request.urlopen(req, timeout=2)
' "http://127.0.0.1:$LAKEFS_PORT/api/v1/user" "$LAKEFS_KEY" "$LAKEFS_SECRET" >/dev/null 2>&1
}

pg_run() { # command... as the cluster's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local pgbin="/usr/lib/postgresql/$POSTGRES_MAJOR/bin"
  if [ ! -x "$pgbin/initdb" ]; then
    say "installing Debian's postgresql-$POSTGRES_MAJOR (apt-get)"
    apt_install "postgresql-$POSTGRES_MAJOR" >&2 ||
      die "PostgreSQL $POSTGRES_MAJOR is needed for the profile scale: apt-get install postgresql-$POSTGRES_MAJOR"
  fi
  local data="$DIR/postgres"
  if [ ! -f "$data/PG_VERSION" ]; then
    # initdb refuses root: the cluster belongs to the postgres user (Debian's package makes it).
    mkdir -p "$data"
    chmod 700 "$data"
    [ "$(id -u)" != 0 ] || chown postgres: "$data"
    pg_run test -w "$data" ||
      die "the postgres user cannot write $data (a parent folder is closed to it): put the stack under /tmp (scripts/stack.sh --dir, scripts/quickstart.sh --state-dir)"
    printf '%s\n' "$PG_SUPER_PASSWORD" >"$DIR/pg.pw"
    [ "$(id -u)" != 0 ] || chown postgres: "$DIR/pg.pw"
    pg_run "$pgbin/initdb" -D "$data" -U postgres --pwfile="$DIR/pg.pw" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >"$DIR/postgres-initdb.log" 2>&1 ||
      failed "PostgreSQL $POSTGRES_MAJOR (initdb)" "$DIR/postgres-initdb.log" "initdb failed"
    rm -f "$DIR/pg.pw"
  fi
  touch "$DIR/postgres.log"
  [ "$(id -u)" != 0 ] || chown postgres: "$DIR/postgres.log"
  pg_run "$pgbin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=''" start >/dev/null ||
    failed "PostgreSQL $POSTGRES_MAJOR" "$DIR/postgres.log" "pg_ctl start failed"
  head -n 1 "$data/postmaster.pid" >"$DIR/postgres.pid"
  wait_healthy "PostgreSQL $POSTGRES_MAJOR" "$DIR/postgres.pid" "$DIR/postgres.log" 30 \
    "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
  # The role and the two databases (once).
  PGPASSWORD="$PG_SUPER_PASSWORD" "$pgbin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -v pw="$PG_PASSWORD" >/dev/null 2>>"$DIR/postgres.log" <<'EOF' ||
SELECT 'CREATE ROLE seg LOGIN PASSWORD ' || quote_literal(:'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'seg') \gexec
SELECT 'CREATE DATABASE lakefs OWNER seg' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'lakefs') \gexec
SELECT 'CREATE DATABASE mlflow OWNER seg' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') \gexec
EOF
    failed "PostgreSQL $POSTGRES_MAJOR (role and databases)" "$DIR/postgres.log" "psql failed"
}

start_versitygw() {
  local bin
  bin="$(versitygw_bin)"
  # Buckets are the top folders of the gateway's root.
  mkdir -p "$DIR/s3/lakefs" "$DIR/s3/mlflow"
  (
    export ROOT_ACCESS_KEY_ID="$S3_KEY" ROOT_SECRET_ACCESS_KEY="$S3_SECRET"
    spawn "$DIR/versitygw.pid" "$DIR/versitygw.log" "$bin" --port "127.0.0.1:$S3_PORT" --quiet posix "$DIR/s3"
  )
  wait_healthy "versitygw $VERSITYGW_VERSION" "$DIR/versitygw.pid" "$DIR/versitygw.log" 30 \
    listening "$S3_PORT"
}

start_mlflow() { # backend-store-uri artifacts-destination
  mkdir -p "$DIR/mlflow"
  (
    # The server reads lakefs:// model folders (the UI's version page, `mlflow models serve`).
    export LAKECTL_SERVER_ENDPOINT_URL="http://127.0.0.1:$LAKEFS_PORT"
    export LAKECTL_CREDENTIALS_ACCESS_KEY_ID="$LAKEFS_KEY" LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY="$LAKEFS_SECRET"
    if [ -n "${S3_PORT:-}" ]; then
      export MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:$S3_PORT" AWS_ACCESS_KEY_ID="$S3_KEY"
      export AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_DEFAULT_REGION=us-east-1
    fi
    SEG_MLFLOW_BACKEND_STORE_URI="$1" SEG_MLFLOW_ARTIFACTS_DESTINATION="$2" \
      "$REPO_ROOT/scripts/mlflow-server.sh" start "$DIR/mlflow" "$MLFLOW_PORT" >>"$DIR/stack.log" 2>&1
  ) || failed "MLflow $MLFLOW_VERSION" "$DIR/mlflow/mlflow.log" "scripts/mlflow-server.sh start failed"
}

# --- state ---------------------------------------------------------------------------------
# DIR/secrets.env: made once per DIR (the encryption key and passwords must stay the same for
# the data they protect); DIR/stack.env: this `up`'s profile, ports and export lines.
load_secrets() {
  if [ ! -f "$DIR/secrets.env" ]; then
    umask 077
    cat >"$DIR/secrets.env" <<EOF
LAKEFS_KEY='${LAKEFS_ACCESS_KEY_ID:-$LAKEFS_SAMPLE_ACCESS_KEY_ID}'
LAKEFS_SECRET='${LAKEFS_SECRET_ACCESS_KEY:-$LAKEFS_SAMPLE_SECRET_ACCESS_KEY}'
LAKEFS_ENCRYPT_SECRET_KEY='$(secret)'
PG_SUPER_PASSWORD='$(secret)'
PG_PASSWORD='$(secret)'
S3_KEY='seg$(secret | cut -c1-12)'
S3_SECRET='$(secret)'
EOF
  fi
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
}

ENGINES_LOCAL="lakefs mlflow"
ENGINES_SCALE="lakefs mlflow versitygw postgres"

write_env() { # profile
  local ns
  case "$1" in
    local) ns="" ;;
    lakefs) ns="local://seg-mlops/" ;;
    scale) ns="s3://lakefs/" ;;
  esac
  {
    echo "export LAKECTL_SERVER_ENDPOINT_URL=http://127.0.0.1:$LAKEFS_PORT"
    echo "export LAKECTL_CREDENTIALS_ACCESS_KEY_ID='$LAKEFS_KEY'"
    echo "export LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY='$LAKEFS_SECRET'"
    echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
    if [ -n "$ns" ]; then
      echo "export SEG_LAKEFS__STORAGE_NAMESPACE=$ns"
    else
      echo "unset SEG_LAKEFS__STORAGE_NAMESPACE"
    fi
    if [ "$1" = scale ]; then
      echo "export MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT"
      echo "export AWS_ACCESS_KEY_ID='$S3_KEY'"
      echo "export AWS_SECRET_ACCESS_KEY='$S3_SECRET'"
      echo "export AWS_DEFAULT_REGION=us-east-1"
      echo "export SEG_STACK_PG_URI='postgresql://seg:$PG_PASSWORD@127.0.0.1:$PG_PORT'"
    fi
    echo "export SEG_STACK_PROFILE=$1 SEG_STACK_DIR='$DIR'"
  } >"$DIR/exports.sh"
  chmod 600 "$DIR/exports.sh"
}

engines_of() { # profile
  case "$1" in
    scale) echo "$ENGINES_SCALE" ;;
    *) echo "$ENGINES_LOCAL" ;;
  esac
}

# The pid file of an engine (MLflow keeps its own in its folder).
pidfile_of() {
  case "$1" in
    mlflow) echo "$DIR/mlflow/mlflow.pid" ;;
    *) echo "$DIR/$1.pid" ;;
  esac
}

# --- commands ------------------------------------------------------------------------------
cmd_up() {
  local profile="$1"
  case "$profile" in
    local | lakefs | scale) ;;
    *) die "unknown profile '$profile': choose local, lakefs or scale" ;;
  esac
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  if [ -f "$DIR/profile" ]; then
    local e
    for e in $(engines_of "$(cat "$DIR/profile")"); do
      if alive "$(pidfile_of "$e")"; then
        die "a $(cat "$DIR/profile") stack already runs from $DIR ($e, pid $(cat "$(pidfile_of "$e")")): 'scripts/stack.sh env --dir $DIR' prints its exports, 'scripts/stack.sh down --dir $DIR' stops it"
      fi
    done
  fi
  command -v python3 >/dev/null || die "python3 (with venv) is needed for MLflow: apt-get install python3-venv"
  load_secrets
  echo "$profile" >"$DIR/profile"
  LAKEFS_PORT="$(free_port)"
  MLFLOW_PORT="$(free_port)"
  S3_PORT=""
  PG_PORT=""
  # Stop what was started when a later engine fails.
  # shellcheck disable=SC2154 # rc is the trap's own
  trap 'rc=$?; [ $rc = 0 ] || cmd_down >/dev/null 2>&1 || true; exit $rc' EXIT
  case "$profile" in
    local)
      start_lakefs_local
      start_mlflow "sqlite:///$DIR/mlflow/mlflow.db" "$DIR/mlflow/artifacts"
      ;;
    lakefs)
      start_lakefs local
      start_mlflow "sqlite:///$DIR/mlflow/mlflow.db" "$DIR/mlflow/artifacts"
      ;;
    scale)
      PG_PORT="$(free_port)"
      S3_PORT="$(free_port)"
      start_postgres
      start_versitygw
      start_lakefs scale
      # SQLAlchemy's default PostgreSQL driver is psycopg 3; the venv pins psycopg2.
      start_mlflow "postgresql+psycopg2://seg:$PG_PASSWORD@127.0.0.1:$PG_PORT/mlflow" "s3://mlflow/"
      ;;
  esac
  trap - EXIT
  write_env "$profile"
  say "profile $profile up from $DIR: lakeFS http://127.0.0.1:$LAKEFS_PORT, MLflow http://127.0.0.1:$MLFLOW_PORT${S3_PORT:+, S3 http://127.0.0.1:$S3_PORT}${PG_PORT:+, PostgreSQL 127.0.0.1:$PG_PORT}"
  cat "$DIR/exports.sh"
}

cmd_env() {
  [ -f "$DIR/exports.sh" ] || die "no stack was started from $DIR: scripts/stack.sh up PROFILE --dir $DIR"
  cat "$DIR/exports.sh"
}


cmd_down() {
  [ -d "$DIR" ] || { say "nothing runs from $DIR"; return 0; }
  DIR="$(cd "$DIR" && pwd)"
  # In the reverse order of `up`: the servers before the stores they write to.
  stop_pid "$DIR/mlflow/mlflow.pid" MLflow
  stop_pid "$DIR/lakefs.pid" lakeFS
  stop_pid "$DIR/versitygw.pid" versitygw
  # PostgreSQL: its own clean shutdown (pg_ctl, fast mode), stop_pid only when that fails.
  if [ -f "$DIR/postgres.pid" ]; then
    if alive "$DIR/postgres.pid"; then
      pg_run "/usr/lib/postgresql/$POSTGRES_MAJOR/bin/pg_ctl" -D "$DIR/postgres" -m fast -w stop >/dev/null 2>&1 ||
        stop_pid "$DIR/postgres.pid" PostgreSQL
      say "stopped PostgreSQL"
    fi
    rm -f "$DIR/postgres.pid"
  fi
  rm -f "$DIR/exports.sh"
}

cmd_status() {
  if [ ! -f "$DIR/profile" ]; then
    echo "no stack was started from $DIR"
    return 0
  fi
  local profile e pidfile
  profile="$(cat "$DIR/profile")"
  echo "profile $profile from $DIR"
  for e in $(engines_of "$profile"); do
    pidfile="$(pidfile_of "$e")"
    if alive "$pidfile"; then
      echo "  $e  running (pid $(cat "$pidfile"), log $(dirname "$pidfile")/$e.log)"
    else
      echo "  $e  not running"
    fi
  done
  [ ! -f "$DIR/exports.sh" ] || grep -E 'ENDPOINT_URL|TRACKING_URI' "$DIR/exports.sh" | sed 's/^export /  /'
}

ACTION="${1:-}"
[ $# -eq 0 ] || shift
PROFILE=""
if [ "$ACTION" = up ]; then
  PROFILE="${1:-}"
  [ -n "$PROFILE" ] || usage
  shift
fi
DIR="$REPO_ROOT/.seg-mlops/stack"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR="${2:?--dir needs a folder}"; shift 2 ;;
    *) usage ;;
  esac
done
case "$ACTION" in
  build) lakefs_bin; versitygw_bin ;;
  up) cmd_up "$PROFILE" ;;
  env) cmd_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
