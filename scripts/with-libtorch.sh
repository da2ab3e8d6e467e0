#!/usr/bin/env bash
# Runs a command with libtorch available for burn's `tch` backend:
#   scripts/with-libtorch.sh cargo test -p seg-model --no-default-features --features tch
# Installs torch (TORCH_VERSION of stack/versions.env, what torch-sys 0.22 expects; PyPI's only Linux wheel is
# the CUDA build: ~6.7 GB, ~3 minutes) once into a cached venv under ~/.cache, keyed by version, then
# sets LIBTORCH_USE_PYTORCH=1 (build) and LD_LIBRARY_PATH (run) and execs the command.
set -euo pipefail
# shellcheck source=../stack/versions.env
. "$(dirname "$0")/../stack/versions.env"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
TORCH_VENV="${TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seg-mlops/torch-$TORCH_VERSION}"
pinned_venv "$TORCH_VENV" with-libtorch "~3 minutes" "torch==$TORCH_VERSION" numpy
TORCH_LIB="$("$TORCH_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export TORCH_VENV LIBTORCH_USE_PYTORCH=1
export PATH="$TORCH_VENV/bin:$PATH"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
