#!/usr/bin/env bash
# Installs this repository's lakefs:// MLflow artifact plugin (python/mlflow-lakefs) from the work
# tree into the venv whose pip is given, without dependencies (the venv pins mlflow and lakefs):
#   scripts/install-lakefs-plugin.sh VENV/bin/pip
# Built in a temporary folder, so the work tree gets no build/ or egg-info; a few seconds.
set -euo pipefail
pip="${1:?usage: install-lakefs-plugin.sh VENV/bin/pip}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-lakefs-build.XXXXXX")"
trap 'rm -rf "$build"' EXIT
cp -r "$root/python/mlflow-lakefs/." "$build/"
"$pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$build" >&2
