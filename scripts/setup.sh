#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Idempotent: quick when done already.
#   scripts/setup.sh          what training needs (CPU JAX; JAXRESNET_GPU=1 adds jax[cuda12])
#   scripts/setup.sh test     plus pytest and the CPU build of PyTorch for the parity tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jaxresnet needs Python 3.11 or newer")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if [ "${1:-}" = "test" ]; then
  # Pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
  pip install "torch==2.13.0"
  pip install -e ".[test]"
else
  pip install -e .
fi
if [ "${JAXRESNET_GPU:-0}" = "1" ]; then
  pip install "jax[cuda12]"
fi
# Compile the native CPU kernels (oneDNN convolutions, fused BatchNorm) now rather than on the
# first training step (a few seconds).
.venv/bin/python -m jaxresnet.native
