#!/usr/bin/env bash
# Install what the model-car needs (idempotent; called by scripts/setup.sh): Debian's busybox-static (the image's shell,
# which KServe's model-car command runs), docker-registry (a local OCI registry the tests start on loopback) and skopeo
# (reads images back). Needs apt-get and root; without them it says what to install and exits 0, and those tests skip
# with that reason.
set -euo pipefail
missing=()
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-registry: install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]}); the model-car tests skip without them" >&2
  exit 0
fi
echo "setup-registry: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
echo "setup-registry: ready: $(command -v busybox) $(command -v docker-registry) $(command -v skopeo)" >&2
