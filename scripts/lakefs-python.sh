#!/usr/bin/env bash
# Installs (once, cached) lakeFS's official Python clients, pinned, and prints the venv's python:
#   scripts/lakefs-python.sh        -> /root/.cache/seg-mlops/lakefs-py-<versions>/bin/python
# lakefs-sdk is the generated API client, lakefs the high-level package (Repository, Branch,
# Object, transact), lakefs-spec lakeFS's fsspec filesystem (what pandas & co. use). The tests drive lakefs-local with them: they are the judges of our server.
set -euo pipefail
# shellcheck source=../stack/versions.env
. "$(dirname "$0")/../stack/versions.env"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
VENV="${LAKEFS_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops/lakefs-py-$LAKEFS_PY_VERSION-sdk-$LAKEFS_SDK_VERSION-spec-$LAKEFS_SPEC_VERSION}"
pinned_venv "$VENV" lakefs-python "~30 s" \
  "lakefs==$LAKEFS_PY_VERSION" "lakefs-sdk==$LAKEFS_SDK_VERSION" "lakefs-spec==$LAKEFS_SPEC_VERSION"
echo "$VENV/bin/python"
