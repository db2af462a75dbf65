#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv. Idempotent: quick when done already.
#   scripts/setup.sh          what training needs (CPU JAX; JAXRESNET_GPU=1 adds jax[cuda13] or [cuda12])
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
  # CUDA 13 wheels need an NVIDIA driver of 580 or newer; CUDA 12 ones run on 525 and newer.
  # JAXRESNET_CUDA=12 or 13 overrides the choice.
  cuda=${JAXRESNET_CUDA:-}
  if [ -z "$cuda" ]; then
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1 | cut -d. -f1)
    if [ -n "$driver" ] && [ "$driver" -ge 580 ] 2>/dev/null; then cuda=13; else cuda=12; fi
  fi
  echo "setup.sh: installing jax[cuda$cuda] (NVIDIA driver ${driver:-not found})"
  pip install "jax[cuda$cuda]"
fi
# Compile the native CPU kernels (oneDNN convolutions, fused BatchNorm) now rather than on the
# first training step (a few seconds).
.venv/bin/python -m jaxresnet.native
