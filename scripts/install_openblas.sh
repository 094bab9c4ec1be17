#!/usr/bin/env bash
# Install Debian's OpenBLAS so MLX's float32 matmuls on a Linux CPU run 20-40x
# faster (see tooltrain/blas.py). Idempotent; does nothing on macOS (Metal) or
# where OpenBLAS is already there. Fails only when it could have installed
# (Linux, apt-get, root or sudo) and the install failed; elsewhere it says why
# not and exits 0, and training runs on MLX's bundled reference BLAS.
#   bash scripts/install_openblas.sh
set -euo pipefail

if [ "$(uname -s)" != Linux ]; then
    echo "install_openblas: $(uname -s): nothing to do (MLX uses Metal/Accelerate)"; exit 0
fi
if ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
    echo "install_openblas: already installed: $(ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0)"; exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_openblas: no apt-get; install your distribution's OpenBLAS, or point TOOLTRAIN_OPENBLAS at a libopenblas.so.0"; exit 0
fi
SUDO=
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
        echo "install_openblas: not root and no sudo; run as root: apt-get install -y libopenblas0-pthread"; exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists; update only when the install cannot find the package.
$SUDO apt-get install -y -qq --no-install-recommends libopenblas0-pthread \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends libopenblas0-pthread; }
echo "install_openblas: installed: $(ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0)"
