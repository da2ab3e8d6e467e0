# The pinned, cached Python venvs of the scripts (MLflow's server, lakeFS's clients, MLflow's
# model tools, libtorch). Source it.

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
