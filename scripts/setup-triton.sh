#!/usr/bin/env bash
# Install a CPU tritonserver for pack's Triton target into ./.triton (idempotent; called by scripts/setup.sh).
#
#   .triton/venv/     the environment Triton's python backend runs (numpy<2, onnxruntime; torch is borrowed
#                     read-only from ./.venv through a .pth file appended after the venv's own packages)
#   .triton/server/   tritonserver 2.51 from the PyPI wheel nvidia-pytriton==0.7.0 (python backend only)
#   .triton/bin/tritonserver   a wrapper that sets LD_LIBRARY_PATH and puts .triton/venv/bin first on PATH
#
# Override the location with PACK_TRITON_HOME. Needs only PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
HOME_DIR=${PACK_TRITON_HOME:-$REPO/.triton}
PY=${PYTHON:-python3}
PYTRITON_VERSION=0.7.0
MAIN_VENV=${PACK_MAIN_VENV:-$REPO/.venv}

stamp="$HOME_DIR/.installed-$PYTRITON_VERSION-v3"
if [ -f "$stamp" ] && [ -x "$HOME_DIR/bin/tritonserver" ]; then
  exit 0
fi
echo "setup-triton: installing tritonserver (nvidia-pytriton==$PYTRITON_VERSION) into $HOME_DIR" >&2
mkdir -p "$HOME_DIR"
VENV="$HOME_DIR/venv"
if [ ! -x "$VENV/bin/python3" ]; then
  "$PY" -m venv "$VENV"
fi
pyver=$("$VENV/bin/python3" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
"$VENV/bin/python3" -m pip install -q "numpy<2" "onnxruntime>=1.17" pillow >&2
"$VENV/bin/python3" -m pip install -q --no-deps "nvidia-pytriton==$PYTRITON_VERSION" >&2
SITE=$("$VENV/bin/python3" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# torch for python-backend models that run TorchScript: borrowed from the main venv, appended after this venv's
# own packages so that numpy<2 here wins over the main venv's numpy 2.
if [ -d "$MAIN_VENV" ]; then
  MAIN_SITE=$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
  if [ -n "$MAIN_SITE" ] && [ -d "$MAIN_SITE/torch" ]; then
    printf 'import sys; sys.path.append(%s)\n' "'$MAIN_SITE'" > "$SITE/zz_pack_borrow_torch.pth"
  fi
fi

SERVER="$HOME_DIR/server"
tmp="$HOME_DIR/.server-tmp-$$"
rm -rf "$tmp"
cp -a "$SITE/pytriton/tritonserver" "$tmp"
stub="$SITE/pytriton/tritonserver/python_backend_stubs/$pyver/triton_python_backend_stub"
if [ ! -f "$stub" ]; then
  echo "setup-triton: no python backend stub for Python $pyver in nvidia-pytriton $PYTRITON_VERSION" >&2
  exit 5
fi
mkdir -p "$tmp/backends/python" "$tmp/caches"
cp "$stub" "$tmp/backends/python/triton_python_backend_stub"
chmod +x "$tmp/backends/python/triton_python_backend_stub" "$tmp/bin/tritonserver"
rm -rf "$SERVER"
mv "$tmp" "$SERVER"

mkdir -p "$HOME_DIR/bin"
cat > "$HOME_DIR/bin/tritonserver.tmp" <<WRAP
#!/usr/bin/env bash
# tritonserver from nvidia-pytriton $PYTRITON_VERSION, with the python backend's environment first on PATH.
export LD_LIBRARY_PATH="$SITE/nvidia_pytriton.libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$VENV/bin:\$PATH"
exec "$SERVER/bin/tritonserver" --backend-directory="$SERVER/backends" --cache-directory="$SERVER/caches" "\$@"
WRAP
chmod +x "$HOME_DIR/bin/tritonserver.tmp"
mv "$HOME_DIR/bin/tritonserver.tmp" "$HOME_DIR/bin/tritonserver"

{ "$HOME_DIR/bin/tritonserver" --help 2>&1 || true; } | grep -q -- "--model-repository" || { echo "setup-triton: $HOME_DIR/bin/tritonserver does not run" >&2; exit 5; }
"$VENV/bin/python3" -c 'import numpy, onnxruntime; assert numpy.__version__ < "2"' >&2
rm -f "$HOME_DIR"/.installed-*
touch "$stamp"
echo "setup-triton: ready: $HOME_DIR/bin/tritonserver" >&2
