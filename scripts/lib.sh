# shellcheck shell=bash
# What the scripts share, one definition each: pinned venvs, ports and health checks, waiting,
# starting and stopping background processes, lakefs-local as a service, and small chores.
# Source it from bash (it defines functions and two constants, and runs nothing). Functions
# that report do so through the caller's `say` where noted.

# --- pinned venvs --------------------------------------------------------------------------
# Makes the venv DIR with REQUIREMENTS once: a venv without its `.complete` marker (an install
# that was interrupted) is made again from scratch. Says what it installs on stderr.
pinned_venv() { # DIR WHO ESTIMATE REQUIREMENT...
  local dir="$1" who="$2" estimate="$3"
  shift 3
  [ ! -f "$dir/.complete" ] || return 0
  echo "$who: installing $* into $dir (one time, $estimate)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  touch "$dir/.complete"
}

# --- ports and health ----------------------------------------------------------------------
# A loopback TCP port that was free a moment ago.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# 0 when URL answers 2xx within 2 s.
answers() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
}

# 0 when the lakeFS API (lakeFS or lakefs-local) at BASE_URL is healthy.
lakefs_healthy() { answers "$1/api/v1/healthcheck"; }

# 0 when the MLflow server at BASE_URL is healthy.
mlflow_healthy() { answers "$1/health"; }

# 0 when something accepts connections on 127.0.0.1:PORT.
listening() {
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$1" >/dev/null 2>&1
}

# lakeFS's sample keys: the defaults of configs/default.toml, lakefs-local and
# docker-compose.yml. Fine on loopback; anywhere else, set your own.
# shellcheck disable=SC2034 # used by the scripts that source this file
LAKEFS_SAMPLE_ACCESS_KEY_ID=AKIAIOSFOLKFSSAMPLES
# shellcheck disable=SC2034
LAKEFS_SAMPLE_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

# --- waiting -------------------------------------------------------------------------------
# Runs CHECK every 0.2 s until it passes. Returns 0 when it passes, 1 when SECONDS have gone by
# (0: no limit), 2 as soon as the process PID (with --pid) is no longer running. The one
# polling loop of the scripts: every wait for a server, a port, a file or an exit goes here.
wait_until() { # [--pid PID] SECONDS CHECK...
  local pid="" limit deadline
  if [ "$1" = --pid ]; then
    pid="$2"
    shift 2
  fi
  limit="$1"
  shift
  deadline=$((SECONDS + limit))
  while :; do
    if "$@"; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    if [ "$limit" != 0 ] && [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
}

# 0 when none of the processes PID... runs.
gone() { # PID...
  local pid
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then return 1; fi
  done
  return 0
}

# --- background processes ------------------------------------------------------------------
# Starts CMD in the background, detached from the terminal (nohup), its output in LOG and its
# pid in PIDFILE. The caller's environment (exports, VAR=value prefixes) is CMD's.
spawn() { # PIDFILE LOG CMD...
  local pidfile="$1" log="$2"
  shift 2
  nohup "$@" >"$log" 2>&1 &
  echo $! >"$pidfile"
}

# 0 when the process of PIDFILE runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops the process PID and its children (MLflow's CLI and its server, for one): TERM, then KILL
# whatever still runs after 10 s; returns once they are gone. With NAME, says "stopped NAME
# (pid N)" through the caller's `say` when the process ran. The one way the scripts stop a
# process (PostgreSQL excepted: scripts/stack.sh asks pg_ctl for a clean shutdown first).
stop_process() { # PID [NAME]
  local pid="$1" name="${2:-}" children
  kill -0 "$pid" 2>/dev/null || return 0
  children="$(pgrep -P "$pid" || true)"
  # shellcheck disable=SC2086 # the children's pids, one word each
  kill -TERM $children "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  if ! wait_until 10 gone "$pid" $children; then
    # shellcheck disable=SC2086
    kill -KILL $children "$pid" 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_until 5 gone "$pid" $children || true
  fi
  [ -z "$name" ] || say "stopped $name (pid $pid)"
}

# stop_process for the process of PIDFILE, then removes the file.
stop_pid() { # PIDFILE [NAME]
  [ -f "$1" ] || return 0
  stop_process "$(cat "$1")" "${2:-}"
  rm -f "$1"
}

# --- services ------------------------------------------------------------------------------
# Starts lakefs-local (the binary BIN) over DATA_DIR on 127.0.0.1:PORT in the background (pid
# in PIDFILE, output in LOG; ARG... are more lakefs-local flags) and waits up to SECONDS for its
# health check. Returns as wait_until does: 0 healthy, 1 not healthy in time, 2 it exited.
start_lakefs_local() { # SECONDS BIN DATA_DIR PORT PIDFILE LOG [ARG...]
  local seconds="$1" bin="$2" data="$3" port="$4" pidfile="$5" log="$6"
  shift 6
  mkdir -p "$data"
  spawn "$pidfile" "$log" "$bin" --data-dir "$data" --listen "127.0.0.1:$port" "$@"
  wait_until --pid "$(cat "$pidfile")" "$seconds" lakefs_healthy "http://127.0.0.1:$port"
}

# --- chores --------------------------------------------------------------------------------
# A step's heading in a script's output.
step() { printf '\n==> %s\n' "$*"; }

# Installs Debian packages with apt-get (sudo unless root), updating the package lists once if
# the first try fails. apt's output goes to stdout.
apt_install() { # PACKAGE...
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" ||
    { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }
}
