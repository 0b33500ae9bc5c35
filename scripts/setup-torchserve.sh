#!/usr/bin/env bash
# TorchServe prerequisites for pack (idempotent; called by scripts/setup.sh after `pip install -e '.[all]'`).
#  - Java 11+ for TorchServe's frontend: installs Debian's openjdk-17-jre-headless when missing (needs root + apt).
#  - torchserve / torch-model-archiver 0.12.0 in the venv (normally already there through the `torchserve` extra).
#  - Pillow for the image handlers. captum is not needed: pack's handlers do not use TorchServe's built-in ones.
# Usage: bash scripts/setup-torchserve.sh   (VENV=path overrides ./.venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
say() { echo "setup-torchserve: $*" >&2; }

java_ok() {
  local java
  java=$(command -v java || true)
  [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ] && java="$JAVA_HOME/bin/java"
  [ -n "$java" ] || return 1
  local major
  major=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)
  [ -n "$major" ] && [ "$major" -ge 11 ]
}

if java_ok; then
  say "java found: $(java -version 2>&1 | head -n1)"
else
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing openjdk-17-jre-headless (TorchServe needs Java 11+)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # Debian's JRE post-install script needs this folder on slim images.
    mkdir -p /usr/share/man/man1
    apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >&2
    java_ok || { say "java is still not usable after installing openjdk-17-jre-headless"; exit 5; }
  else
    say "Java 11+ is missing: install a JDK/JRE (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    exit 5
  fi
fi

if [ ! -x "$PY" ]; then
  say "no Python environment at $VENV (run scripts/setup.sh first)"
  exit 5
fi
if ! "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as md
assert md.version("torchserve") == "0.12.0" and md.version("torch-model-archiver") == "0.12.0"
import PIL, ts, model_archiver  # noqa: F401
PY
then
  say "installing torchserve==0.12.0 and torch-model-archiver==0.12.0 into $VENV"
  "$PY" -m pip install -q "torchserve==0.12.0" "torch-model-archiver==0.12.0" pillow >&2
fi
[ -x "$VENV/bin/torchserve" ] || { say "$VENV/bin/torchserve is missing after installation"; exit 5; }
say "TorchServe is ready ($("$PY" -c 'import ts; print(ts.__version__)'), java $(java -version 2>&1 | head -n1 | sed 's/.*version "\(.*\)".*/\1/'))"
